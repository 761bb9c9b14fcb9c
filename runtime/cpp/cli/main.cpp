// ldmind: the command line of the C++ runtime -- `python -m runtime`'s upscale, generate, info
// and profile over the C API (include/ldmind.h), with the same flags, defaults, messages and
// exit codes (runtime/cli.py): 0 done, 2 bad input, engines or options, or out of memory (one
// line on stderr, no output file), 1 internal error, 130 SIGINT, 143 SIGTERM.
//
// Outputs are written under a temporary name in their folder (fsync, then rename); a failure or
// a signal removes the temporary, and an existing output is replaced only by a complete one.
// What the Python CLI has and this one refuses (one line, exit 2): folder inputs and their
// flags, 16-bit and translucent inputs, WebP/TIFF/BMP, --depth 16, --plot, info --json, serve.
//
// This file: progress, the options common to the commands, upscale, generate, info and main.
// The rest: args.cpp and flags.cpp (the command line, as argparse reads runtime/cli.py's),
// output.cpp (signals, output checks, atomic writes), library.cpp (the C API's failures,
// pipelines, buffers), profile.cpp (profile), pytext.cpp (Python's spellings), image_io.cpp.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "args.hpp"
#include "errors.hpp"
#include "image_io.hpp"
#include "json.hpp"
#include "ldmind.h"
#include "library.hpp"
#include "output.hpp"
#include "profile.hpp"
#include "pytext.hpp"

namespace ldmind_cli {
namespace {

const char* PROG = "ldmind";

// -- progress (runtime/progress.py) -------------------------------------------------------------
struct Progress {
    bool quiet = false, tty = false;
    std::string header, stage;
    double t0 = 0, last = 0;
    int width = 30;

    void write(const std::string& s) {
        if (quiet) return;
        if (std::fputs(s.c_str(), stderr) < 0 || std::fflush(stderr) != 0) quiet = true;
    }
    void operator()(const char* stage_c, int done, int total) {
        if (quiet) return;
        if (!header.empty()) {
            write(header + "\n");
            header.clear();
        }
        const double now = now_s();
        std::string st = stage_c;
        char buf[512];
        if (st != stage) {
            stage = st;
            t0 = now;
            last = 0;
            if (!tty) write(st + ": " + std::to_string(total) + (st == contract::STAGE_DENOISE ? " steps\n" : " tiles\n"));
        }
        const bool finished = done >= total;
        if (tty && (finished || now - last > 0.1)) {
            last = now;
            const int filled = static_cast<int>(width * static_cast<double>(done) / std::max(total, 1));
            std::string bar = std::string(static_cast<size_t>(std::max(0, std::min(width, filled))), '#') +
                              std::string(static_cast<size_t>(width - std::max(0, std::min(width, filled))), '.');
            std::snprintf(buf, sizeof buf, "\r%-22s [%s] %d/%d %6.1f s%s", st.c_str(), bar.c_str(), done, total,
                          now - t0, finished ? "\n" : "");
            write(buf);
        } else if (finished && !tty) {
            std::snprintf(buf, sizeof buf, "%s: done in %.1f s\n", st.c_str(), now - t0);
            write(buf);
        }
    }
};

int progress_cb(const char* stage, int done, int total, void* user) {
    if (g_signal) return 1;
    (*static_cast<Progress*>(user))(stage, done, total);
    return g_signal ? 1 : 0;
}

// -- the commands -------------------------------------------------------------------------------
struct Common {
    std::string engines, backend, precision;
    int n, steps, backproject, threads, quality, tile, latent_tile, latent_overlap;
    double eta, fidelity;
    long long seed;
    std::string sampler, schedule;
    bool quiet;
};

Common common(Parser& p) {
    Common c;
    c.engines = p.get("engines", p.command == "generate" ? contract::DEFAULT_GENERATION_ENGINES : contract::DEFAULT_ENGINES);
    c.backend = p.get("backend", "auto");
    c.precision = p.get("precision", "auto");
    c.n = static_cast<int>(std::min<long long>(p.get_int("num_samples", contract::DEFAULT_NUM_SAMPLES), 1 << 30));
    c.steps = static_cast<int>(std::min<long long>(p.get_int("steps", contract::DEFAULT_STEPS), 1 << 30));
    c.backproject =
        p.find("backproject") ? static_cast<int>(p.get_int("backproject", contract::DEFAULT_BACKPROJECT)) : 0;
    c.threads = static_cast<int>(std::min<long long>(p.get_int("threads", contract::DEFAULT_THREADS), 1 << 30));
    c.quality = static_cast<int>(p.get_int("quality", contract::DEFAULT_QUALITY));
    c.tile = static_cast<int>(std::min<long long>(p.get_int("tile", 0), 1 << 30));
    c.latent_tile = static_cast<int>(std::min<long long>(p.get_int("latent_tile", -1), 1 << 30));
    c.latent_overlap = static_cast<int>(std::min<long long>(p.get_int("latent_overlap", -1), 1 << 30));
    c.eta = p.get_number("eta", contract::DEFAULT_ETA);
    c.fidelity = p.get_number("fidelity", p.command == "generate" ? contract::DEFAULT_GENERATION_FIDELITY
                                                                     : contract::DEFAULT_FIDELITY);
    c.seed = p.get_int("seed", contract::DEFAULT_SEED);
    c.sampler = p.get("sampler", contract::DEFAULT_SAMPLER);
    c.schedule = p.get("schedule", contract::DEFAULT_DDIM_SCHEDULE);
    c.quiet = p.has("quiet");
    return c;
}

void options_from(const Common& c, ldmind_options& o, Progress* progress) {
    ldmind_options_init(&o);
    o.steps = c.steps;
    o.eta = c.eta;
    o.fidelity = c.fidelity;
    o.seed = c.seed;
    o.num_samples = c.n;
    o.backproject = c.backproject;
    o.sampler = c.sampler.c_str();
    o.schedule = c.schedule.c_str();
    o.tile = c.tile;
    o.latent_tile = c.latent_tile;
    o.latent_overlap = c.latent_overlap;
    o.progress = progress ? progress_cb : nullptr;
    o.user = progress;
}

Progress make_progress(const Common& c, ldmind_pipeline* p) {
    Progress pr;
    pr.quiet = c.quiet;
    pr.tty = isatty(2) != 0;
    pr.header = one_line(std::string(ldmind_model_name(p)) + ": backend " + ldmind_backend(p) + " (" +
                         (c.backend != "auto" ? "requested" : "auto") + ")");
    return pr;
}

void refuse_unsupported(Parser& p) {
    if (p.find("depth") && p.get("depth") == "16")
        throw Fail{"--depth 16: the C++ CLI writes 8-bit images; for 16-bit outputs use python -m runtime"};
}

int cmd_upscale(Parser& p) {
    const std::string input_raw = p.get("input");
    const PyPath input(input_raw);
    if (is_dir(input_raw))
        throw Fail{input.s + ": folder inputs are not supported by the C++ CLI; give one image, or use "
                             "python -m runtime upscale DIR"};
    if (p.has("recursive") || p.has("skip_existing") || p.has("ext"))
        throw Fail{input.s + ": --recursive, --skip-existing and --ext apply to a folder input, and this is not a folder"};
    refuse_unsupported(p);
    const Common c = common(p);
    const PyPath out(p.get("output"));
    std::vector<PyPath> outs;
    if (c.n == 1) outs.push_back(out);
    else
        for (int j = 0; j < c.n; ++j) outs.push_back(out.with_name(out.stem() + "_" + std::to_string(j) + out.suffix()));
    for (const auto& o : outs) check_output_path(o, input_raw, p.has("overwrite"));
    Image lr = ldmind_cli::load_image(input_raw, input.s);
    check_signal();
    Pipe pipe;
    open_pipeline(pipe, c.engines, c.backend, c.precision, c.threads, true);
    double scale = p.has("scale") ? p.get_number("scale", 0) : 0;
    int ow = 0, oh = 0;
    if (p.has("size")) p.size("size", &ow, &oh);
    if (!ldmind_is_conditional(pipe.p)) {
        // the library's refusal, first as in Python (it returns before touching the output)
        uint8_t none = 0;
        ldmind_options d;
        ldmind_options_init(&d);
        library_failure(ldmind_upscale(pipe.p, lr.rgb.data(), lr.width, lr.height, scale, ow, oh, &d, &none));
    }
    int H = 0, W = 0;
    ldmind_status s = ldmind_output_size(pipe.p, lr.width, lr.height, scale, ow, oh, &H, &W);
    if (s != LDMIND_OK) library_failure(s);
    Progress progress = make_progress(c, pipe.p);
    ldmind_options o;
    options_from(c, o, &progress);
    const size_t one = static_cast<size_t>(H) * W * 3;
    Buffer buf(static_cast<double>(c.n) * H * W * 3);
    run_call([&] { return ldmind_upscale(pipe.p, lr.rgb.data(), lr.width, lr.height, scale, ow, oh, &o, buf.get()); });
    for (int j = 0; j < c.n; ++j) {
        Image img;
        img.width = W;
        img.height = H;
        img.rgb.assign(buf.get() + one * j, buf.get() + one * (j + 1));
        save_image(img, outs[static_cast<size_t>(j)], c.quality);
        check_signal();
        say(one_line(outs[static_cast<size_t>(j)].s));
    }
    return 0;
}

int cmd_generate(Parser& p) {
    refuse_unsupported(p);
    const Common c = common(p);
    const PyPath out(p.get("output"));
    if (exists(out.s) && !is_dir(out.s))
        throw Fail{out.s + ": exists and is not a folder; -o wants a folder for generated images"};
    if (!exists(out.s) && !is_dir(out.parent()))
        throw Fail{out.s + ": parent folder " + out.parent() + " does not exist"};
    Pipe pipe;
    open_pipeline(pipe, c.engines, c.backend, c.precision, c.threads, true);
    int W = 0, H = 0;
    p.size("size", &W, &H);
    Progress progress = make_progress(c, pipe.p);
    ldmind_options o;
    options_from(c, o, &progress);
    const size_t one = static_cast<size_t>(H) * W * 3;
    Buffer buf(static_cast<double>(c.n) * H * W * 3);
    const int latent = p.has("zoom") ? -1 : 0;     // -1: the training latent, stretched; 0: the output's scale
    run_call([&] { return ldmind_generate(pipe.p, W, H, latent, latent, &o, buf.get()); });
    if (mkdir(out.s.c_str(), 0777) != 0 && errno != EEXIST)
        throw Fail{out.s + ": cannot create the folder (" + std::strerror(errno) + ")"};
    for (int j = 0; j < c.n; ++j) {
        Image img;
        img.width = W;
        img.height = H;
        img.rgb.assign(buf.get() + one * j, buf.get() + one * (j + 1));
        const PyPath f(out.s + "/sample_seed" + std::to_string(c.seed + j) + ".png");
        save_image(img, f, c.quality);
        check_signal();
        say(one_line(f.s));
    }
    return 0;
}

std::string mib(double bytes) {
    char b[64];
    std::snprintf(b, sizeof b, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return b;
}

int cmd_info(Parser& p) {
    if (p.has("json")) throw Fail{"info --json is not supported by the C++ CLI; use python -m runtime info --json"};
    const std::string engines = p.get("engines");
    const bool verify = !p.has("no_verify");
    Pipe pipe;
    // described, not loaded: no graph compiled (python -m runtime info opens none either; with
    // verify, both open each graph unoptimised in ONNX Runtime)
    ldmind_status s = ldmind_inspect(engines.c_str(), verify ? 1 : 0, &pipe.p);
    check_signal();
    if (s != LDMIND_OK) library_failure(s);
    const PyPath root(engines);
    std::string text;
    {
        FILE* f = std::fopen((root.s + "/manifest.json").c_str(), "rb");
        if (!f) throw Fail{root.s + "/manifest.json: cannot read"};
        char b[65536];
        size_t n;
        while ((n = std::fread(b, 1, sizeof b, f)) > 0) text.append(b, n);
        std::fclose(f);
    }
    ldmind::json::Value m = ldmind::json::parse(text);
    auto str = [](const ldmind::json::Value* v, const std::string& def) {
        if (!v) return def;
        if (v->kind == ldmind::json::Value::String) return v->str;
        if (v->kind == ldmind::json::Value::Number) return v->integral ? std::to_string(v->i) : py_float(v->num);
        return def;
    };
    std::string graphs;
    if (const ldmind::json::Value* g = m.find("graphs"))
        for (const auto& [key, v] : g->obj) {
            const std::string file = str(v.find("file"), key);
            struct stat st;
            const double size = stat((root.s + "/" + file).c_str(), &st) == 0 ? static_cast<double>(st.st_size) : 0;
            graphs += (graphs.empty() ? "" : ", ") + one_line(file) + " " + mib(size);
        }
    // each line through one_line: the directory, model and file names are the user's
    std::string lines = one_line(root.s + ": " + ldmind_model_name(pipe.p) + " (" +
                                 (ldmind_is_conditional(pipe.p) ? "super-resolution" : "generation") + "), " +
                                 str(m.find("precision"), "fp32") + ", manifest format " +
                                 str(m.find("format_version"), "?")) + "\n";
    lines += "  graphs:    " + graphs + " (checksums " + (verify ? "verified" : "not checked") + ")\n";
    lines += std::string("  backend:   ") + ldmind_backend(pipe.p) + " (auto picks)\n";
    std::string reason = ldmind_backend_reason(pipe.p);
    if (reason.rfind("auto: ", 0) == 0) reason = reason.substr(6);
    lines += "  auto picks: " + one_line(reason);
    say(lines);
    return 0;
}

// -- main -----------------------------------------------------------------------------------------
int run(int argc, char** argv) {
    std::vector<std::string> extras, rest;
    std::string command;
    bool have_command = false;
    Parser top;
    top.flag({"-h", "--help"}, "help");
    top.help = TOP_HELP;
    int i = 1;
    for (; i < argc; ++i) {
        std::string s = argv[i];
        if (s == "--") continue;
        if (top.is_option(s)) {
            Arg* a = top.exact(s);
            if (!a) {
                auto m = top.prefix_matches(s);
                if (m.size() == 1) a = m[0].arg;
            }
            if (a && a->dest == "help") {
                std::fputs(TOP_HELP, stdout);
                return 0;
            }
            extras.push_back(s);
            continue;
        }
        command = s;
        have_command = true;
        ++i;
        break;
    }
    if (!have_command) throw UsageFail{"the following arguments are required: command"};
    if (std::find(COMMANDS.begin(), COMMANDS.end(), command) == COMMANDS.end()) {
        std::string c;
        for (size_t k = 0; k < COMMANDS.size(); ++k) c += (k ? ", " : "") + py_str(COMMANDS[k]);
        throw UsageFail{"argument command: invalid choice: " + py_str(command) + " (choose from " + c + ")"};
    }
    if (command == "serve")
        throw Fail{"serve is not part of the C++ CLI; use python -m runtime serve, or embed the library (ldmind.h)"};
    for (; i < argc; ++i) rest.push_back(argv[i]);
    Parser p = make_parser(command);
    p.parse(rest, extras);
    if (!extras.empty()) {
        std::string e;
        for (size_t k = 0; k < extras.size(); ++k) e += (k ? " " : "") + extras[k];
        throw UsageFail{"unrecognized arguments: " + e};
    }
    if (command == "upscale") return cmd_upscale(p);
    if (command == "generate") return cmd_generate(p);
    if (command == "info") return cmd_info(p);
    return cmd_profile(p);
}

}  // namespace
}  // namespace ldmind_cli

int main(int argc, char** argv) {
    using namespace ldmind_cli;
    install_signals();
    signal(SIGPIPE, SIG_IGN);   // a reader gone away: the write fails and is ignored (say)
    std::string line;
    int code;
    try {
        code = run(argc, argv);
        if (g_signal) throw Stopped{g_signal};
        return code;
    } catch (const UsageFail& e) {
        line = std::string(PROG) + ": error: " + e.msg + " (see --help)";
        code = 2;
    } catch (const Fail& e) {
        line = std::string(PROG) + ": error: " + e.msg;
        code = 2;
    } catch (const ImageError& e) {
        line = std::string(PROG) + ": error: " + e.what();
        code = 2;
    } catch (const Stopped& e) {
        line = std::string(PROG) + (e.sig == SIGTERM ? ": terminated (SIGTERM)" : ": interrupted (SIGINT)");
        code = 128 + e.sig;
    } catch (const std::bad_alloc&) {
        line = std::string(PROG) + ": error: " + contract::OUT_OF_MEMORY;
        code = 2;
    } catch (const Internal& e) {
        line = std::string(PROG) + ": internal error: " + e.msg + " (set LDMIND_DEBUG=1 for the traceback)";
        code = 1;
    } catch (const std::exception& e) {
        line = std::string(PROG) + ": internal error: " + e.what() + " (set LDMIND_DEBUG=1 for the traceback)";
        code = 1;
    }
    if (g_tmp[0]) unlink(g_tmp);
    say(one_line(line), stderr);   // as runtime/cli.py: a name in the message stays on its line
    return code;
}
