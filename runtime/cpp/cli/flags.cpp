// The ldmind CLI's commands on the argparse-alike (args.hpp), as runtime/cli.py configures them:
// flags, their checks (argparse's type-error messages), choices, defaults and help.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "args.hpp"
#include "pytext.hpp"

namespace ldmind_cli {

namespace {

Conv positive_number(const std::string& what) {
    return {[what](const std::string& t) -> std::string {
        double v;
        if (!py_number(t, &v)) return contract::fill(contract::NUMBER, {what, py_str(t)});
        if (!std::isfinite(v) || v <= 0) return contract::fill(contract::POSITIVE_NUMBER, {what, t});
        return "";
    }};
}
Conv size_arg() {
    return {[](const std::string& t) -> std::string {
        std::string l = lower(t);
        std::vector<std::string> parts;
        size_t i = 0;
        for (;;) {
            size_t j = l.find('x', i);
            parts.push_back(l.substr(i, j == std::string::npos ? std::string::npos : j - i));
            if (j == std::string::npos) break;
            i = j + 1;
        }
        long long w, h;
        if (parts.size() != 2 || !py_int(parts[0], &w) || !py_int(parts[1], &h))
            return contract::fill(contract::SIZE_FORMAT, {py_str(t)});
        if (w < 1 || h < 1) return contract::fill(contract::SIZE_POSITIVE, {py_str(t)});
        return "";
    }};
}
Conv int_at_least(long long lo, const std::string& what) {
    return {[lo, what](const std::string& t) -> std::string {
        long long v;
        if (!py_int(t, &v)) return contract::fill(contract::INTEGER, {what, py_str(t)});
        if (v < lo) return contract::fill(contract::AT_LEAST, {what, std::to_string(lo), std::to_string(v)});
        return "";
    }};
}
Conv eta_arg() {
    return {[](const std::string& t) -> std::string {
        double v;
        if (!py_number(t, &v)) return contract::fill(contract::NUMBER, {"eta", py_str(t)});
        if (!std::isfinite(v) || v < 0) return contract::fill(contract::ETA, {t});
        return "";
    }};
}
Conv fidelity_arg() {   // runtime/request.py parse_fidelity
    return {[](const std::string& t) -> std::string {
        double v;
        if (!py_number(t, &v)) return contract::fill(contract::NUMBER, {"fidelity", py_str(t.substr(0, 40))});
        if (!(v >= contract::MIN_FIDELITY && v <= contract::MAX_FIDELITY))
            return contract::fill(contract::FIDELITY, {t.substr(0, 40)});
        return "";
    }};
}
Conv int_in(long long lo, long long hi, const std::string& what) {
    return {[lo, hi, what](const std::string& t) -> std::string {
        long long v;
        if (!py_int(t, &v)) return contract::fill(contract::INTEGER, {what, py_str(t)});
        if (v < lo || v > hi)
            return contract::fill(contract::IN_RANGE, {what, std::to_string(lo), std::to_string(hi), std::to_string(v)});
        return "";
    }};
}
Conv depth_arg() {
    return {[](const std::string& t) -> std::string {
        if (t == "auto" || t == "8" || t == "16") return "";
        return contract::fill(contract::DEPTH, {py_str(t)});
    }};
}
Conv plain_int() {
    return {[](const std::string& t) -> std::string {
        long long v;
        return py_int(t, &v) ? "" : "invalid int value: " + py_str(t);
    }};
}

const std::vector<std::string> BACKENDS{"auto", "cpu", "cuda", "ort-trt", "tensorrt", "openvino", "openvino-bf16"};
const std::vector<std::string> PRECISIONS{"auto", "fp32", "bf16"};

std::string braces(const std::vector<std::string>& names) {   // argparse's {a,b} of choices
    std::string s;
    for (size_t k = 0; k < names.size(); ++k) s += (k ? "," : "") + names[k];
    return "{" + s + "}";
}

std::string common_help(const std::string& engines) {
    namespace c = contract;
    char eta[32], fidelity[32], gen_fidelity[32];
    std::snprintf(eta, sizeof eta, "%g", c::DEFAULT_ETA);
    std::snprintf(fidelity, sizeof fidelity, "%g", c::DEFAULT_FIDELITY);
    std::snprintf(gen_fidelity, sizeof gen_fidelity, "%g", c::DEFAULT_GENERATION_FIDELITY);
    return "  --engines DIR         engine directory written by `python -m export` (default " + engines + ")\n" +
           "  -n, --num-samples K   samples (default " + std::to_string(c::DEFAULT_NUM_SAMPLES) + ")\n" +
           "  --steps N             sampler steps (default " + std::to_string(c::DEFAULT_STEPS) + ")\n" +
           "  --eta E               DDIM eta: 0 deterministic, 1 DDPM-like (default " + eta + ")\n" +
           "  --fidelity F          detail against faithfulness, 0..1: 0 the paper's sampler (full diversity);\n"
           "                        higher skips the noisiest and the last steps: faithful, faster\n"
           "                        (default " + fidelity + " for upscale, " + gen_fidelity + " for generate)\n" +
           "  --schedule " + braces(c::DDIM_SCHEDULES) + "  DDIM steps executed (default " +
           c::DEFAULT_DDIM_SCHEDULE + ")\n" +
           "  --sampler " + braces(c::SAMPLERS) + " (default " + c::DEFAULT_SAMPLER + ")\n" +
           "  --seed S              sample j uses seed + j (default " + std::to_string(c::DEFAULT_SEED) + ")\n" +
           "  --backend {auto,cpu,cuda,tensorrt,openvino,openvino-bf16}\n"
           "                        graph backend (default auto: on the CPU, each graph on the fastest backend\n"
           "                        allowed here, by the times the Python runtime recorded)\n"
           "  --precision {auto,fp32,bf16}  CPU arithmetic: auto (bf16 where the CPU has it natively and the\n"
           "                        model's quality gate allows it), fp32, or bf16 (forced, on openvino-bf16)\n"
           "  --tile Q              output pixels per LIIF query (default: the manifest's query_chunk)\n"
           "  --latent-tile N       latent tile side in cells (default: from the model)\n"
           "  --latent-overlap N    overlap of neighbouring latent tiles in cells (default: at least 8 % of the tile)\n"
           "  --threads T           CPU threads per graph (default " + std::to_string(c::DEFAULT_THREADS) +
           ": ONNX Runtime decides)\n" +
           "  --quality Q           JPEG output quality " + std::to_string(c::MIN_QUALITY) + ".." +
           std::to_string(c::MAX_QUALITY) + " (default " + std::to_string(c::DEFAULT_QUALITY) + ")\n" +
           "  -q, --quiet           no progress output\n";
}

void add_common(Parser& p) {
    p.add({"--engines"}, "engines");
    p.add({"-n", "--num-samples"}, "num_samples", int_at_least(1, "-n"));
    p.add({"--steps"}, "steps", int_at_least(1, "--steps"));
    p.add({"--eta"}, "eta", eta_arg());
    p.add({"--fidelity"}, "fidelity", fidelity_arg());
    p.add({"--schedule"}, "schedule").choices = contract::DDIM_SCHEDULES;
    p.add({"--sampler"}, "sampler").choices = contract::SAMPLERS;
    p.add({"--seed"}, "seed", plain_int());
    p.add({"--backend"}, "backend").choices = BACKENDS;
    p.add({"--precision"}, "precision").choices = PRECISIONS;
    p.add({"--tile"}, "tile", int_at_least(1, "--tile"));
    p.add({"--latent-tile"}, "latent_tile", int_at_least(1, "--latent-tile"));
    p.add({"--latent-overlap"}, "latent_overlap", int_at_least(0, "--latent-overlap"));
    p.add({"--threads"}, "threads", int_at_least(0, "--threads"));
    p.add({"--quality"}, "quality", int_in(contract::MIN_QUALITY, contract::MAX_QUALITY, "--quality"));
    p.flag({"--webp-lossless"}, "webp_lossless");
    p.flag({"-q", "--quiet"}, "quiet");
}

}  // namespace

const std::vector<std::string> COMMANDS{"upscale", "generate", "profile", "info", "serve"};

const char* const TOP_HELP =
    "usage: ldmind [-h] {upscale,generate,profile,info} ...\n\n"
    "Arbitrary-scale upsampling and generation on exported ldmind graphs (the C++ runtime).\n\n"
    "  upscale   super-resolve an image to any scale or size\n"
    "  generate  sample new images (generation models)\n"
    "  profile   latency of one real request, stage by stage\n"
    "  info      summarise an engine directory\n\n"
    "Exit status: 0 done, 2 bad input, engines or options, or out of memory, 1 internal error,\n"
    "130 SIGINT, 143 SIGTERM.  See runtime/cpp/README.md for what differs from python -m runtime.\n";

Parser make_parser(const std::string& cmd) {
    Parser p;
    p.command = cmd;
    p.flag({"-h", "--help"}, "help");
    if (cmd == "upscale") {
        p.help = std::string("usage: ldmind upscale IN (--scale S | --size WxH) -o OUT [options]\n\n"
                             "  IN                    input image (PNG or JPEG, 8-bit, opaque)\n"
                             "  --scale S             scale factor s: output round(s*h) x round(s*w)\n"
                             "  --size WxH            output size WIDTHxHEIGHT\n"
                             "  -o, --output OUT      output image (.png, .jpg, .jpeg); with -n K: NAME_0.EXT ... NAME_{K-1}.EXT\n"
                             "  --overwrite           allow -o to be the input image itself (replaced)\n"
                             "  --backproject K       back-projection iterations onto the input (default " +
                             std::to_string(contract::DEFAULT_BACKPROJECT) + "; 0: raw sample)\n") +
                 common_help(contract::DEFAULT_ENGINES);
        p.positional("input");
        int g = p.group(true);
        p.add({"--scale"}, "scale", positive_number("scale"), g);
        p.add({"--size"}, "size", size_arg(), g);
        p.add({"-o", "--output"}, "output").required = true;
        p.flag({"--overwrite"}, "overwrite");
        p.flag({"--strip-metadata"}, "strip_metadata");
        p.flag({"--recursive"}, "recursive");
        p.flag({"--skip-existing"}, "skip_existing");
        p.add({"--ext"}, "ext");
        p.add({"--depth"}, "depth", depth_arg());
        p.add({"--backproject"}, "backproject", int_in(0, contract::MAX_BACKPROJECT, "--backproject"));
        add_common(p);
    } else if (cmd == "generate") {
        p.help = std::string("usage: ldmind generate --size WxH -o DIR [options]\n\n"
                             "  --size WxH            output size WIDTHxHEIGHT\n"
                             "  -o, --output DIR      output folder (created if missing): sample_seed{S+j}.png\n"
                             "  --zoom                sample the training latent and stretch it to --size (large,\n"
                             "                        soft cells); default: a latent of the output's own scale\n") +
                 common_help(contract::DEFAULT_GENERATION_ENGINES);
        p.add({"--size"}, "size", size_arg()).required = true;
        p.add({"-o", "--output"}, "output").required = true;
        p.add({"--depth"}, "depth", depth_arg());
        p.flag({"--zoom"}, "zoom");
        add_common(p);
    } else if (cmd == "profile") {
        p.help =
            "usage: ldmind profile ENGINES [IMAGE] [--scale S | --size WxH] [--steps N] [--sampler S]\n"
            "                      [--fidelity F] [--backend B] [--precision P] [--threads T] [--repeat K]\n"
            "                      [--json OUT]\n\n"
            "The per-stage latency table of `python -m runtime profile`, measured from the progress\n"
            "callback's stage boundaries: one warm-up, then medians of --repeat requests (default " +
            std::to_string(contract::DEFAULT_PROFILE_REPEAT) + ").\n";
        p.positional("engines");
        p.positional("image", true);
        int g = p.group(false);
        p.add({"--scale"}, "scale", positive_number("scale"), g);
        p.add({"--size"}, "size", size_arg(), g);
        p.add({"--steps"}, "steps", int_at_least(1, "--steps"));
        p.add({"--sampler"}, "sampler").choices = contract::SAMPLERS;
        p.add({"--fidelity"}, "fidelity", fidelity_arg());
        p.add({"--backend"}, "backend").choices = BACKENDS;
        p.add({"--precision"}, "precision").choices = PRECISIONS;
        p.add({"--threads"}, "threads", int_at_least(0, "--threads"));
        p.add({"--repeat"}, "repeat", int_at_least(1, "--repeat"));
        p.add({"--json"}, "json");
        p.add({"--plot"}, "plot");
    } else if (cmd == "info") {
        p.help = "usage: ldmind info ENGINES [--no-verify]\n\n"
                 "Model, kind, precision, manifest format, graphs with their sizes, checksums, backend\n"
                 "(described without loading a graph).\n";
        p.positional("engines");
        p.flag({"--json"}, "json");
        p.flag({"--no-verify"}, "no_verify");
    }
    return p;
}

}  // namespace ldmind_cli
