// `ldmind profile` (runtime/profile.py): one warm-up, then medians of --repeat requests, stage by
// stage, from the progress callback's stage boundaries (profile.hpp).
#include "profile.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "errors.hpp"
#include "image_io.hpp"
#include "library.hpp"
#include "output.hpp"
#include "pytext.hpp"

namespace ldmind_cli {

namespace {

const std::vector<std::string>& STAGES = contract::PROFILE_STAGES;   // the table's rows, in order

struct Recorder {           // profile.Recorder: stage boundaries as timestamps
    double t0 = 0, last = 0;
    std::map<std::string, double> wall;
    std::vector<double> steps;
    void reset() {
        t0 = last = now_s();
        wall.clear();
        steps.clear();
    }
};

int record_cb(const char* stage_c, int done, int, void* user) {
    if (g_signal) return 1;
    Recorder& r = *static_cast<Recorder*>(user);
    const double now = now_s();
    // contract.profile_stage: the row of the stage, "render WxH" by its first word
    const std::string stage = stage_c;
    const auto row = contract::PROFILE_STAGE_OF.find(stage.substr(0, stage.find(' ')));
    const std::string name = row == contract::PROFILE_STAGE_OF.end() ? stage : row->second;
    if (done > 0) {
        r.wall[name] += now - r.last;
        if (name == "U-Net steps") r.steps.push_back(now - r.last);
    }
    r.last = now;
    return 0;
}

double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
double percentile(std::vector<double> v, double q) {   // numpy's default (linear)
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const double idx = q / 100 * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(idx)), hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

std::string json_str(const std::string& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') o += std::string("\\") + static_cast<char>(c);
        else if (c < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else o += static_cast<char>(c);
    }
    return o + "\"";
}
std::string json_num(double v) { return std::isfinite(v) ? py_float(v) : "NaN"; }

std::string fmtf(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmtf(const char* f, ...) {
    char b[1024];
    va_list a;
    va_start(a, f);
    std::vsnprintf(b, sizeof b, f, a);
    va_end(a);
    return b;
}

}  // namespace

int cmd_profile(Parser& p) {
    if (p.has("plot")) throw Fail{"--plot is not supported by the C++ CLI; write --json and plot it, or use python -m runtime profile"};
    const std::string engines = p.get("engines");
    const bool has_image = p.has("image");
    const std::string image = p.get("image");
    if (has_image && !p.has("scale") && !p.has("size")) throw Fail{"give --scale or --size"};
    const bool has_json = p.has("json");
    const std::string json_path = p.get("json");
    if (has_json) {
        const PyPath jp(json_path);
        char* real = realpath(jp.parent().c_str(), nullptr);
        const bool ok = real && is_dir(real);
        std::free(real);
        if (!ok) throw Fail{json_path + ": output folder " + jp.parent() + " does not exist"};
    }
    const int steps = static_cast<int>(std::min<long long>(p.get_int("steps", contract::DEFAULT_STEPS), 1 << 30));
    const std::string sampler = p.get("sampler", contract::DEFAULT_SAMPLER), backend = p.get("backend", "auto");
    const int repeat =
        static_cast<int>(std::min<long long>(p.get_int("repeat", contract::DEFAULT_PROFILE_REPEAT), 1 << 20));
    const int threads = static_cast<int>(std::min<long long>(p.get_int("threads", contract::DEFAULT_THREADS), 1 << 30));
    Pipe pipe;
    open_pipeline(pipe, engines, backend, p.get("precision", "auto"), threads, true);
    const bool conditional = ldmind_is_conditional(pipe.p) != 0;
    if (!has_image && conditional) throw Fail{engines + ": a super-resolution model: give an IMAGE to upscale"};
    if (has_image && !conditional) throw Fail{engines + ": a generation model: give --size and no IMAGE"};
    if (!has_image && !p.has("size")) throw Fail{"generation: give --size WxH"};
    const double scale = p.has("scale") ? p.get_number("scale", 0) : 0;
    int ow = 0, oh = 0;
    if (p.has("size")) p.size("size", &ow, &oh);

    char dir_template[] = "/tmp/ldmind-profile-XXXXXX";
    const char* tmpdir = mkdtemp(dir_template);
    if (!tmpdir) throw Fail{std::string("cannot create a temporary folder (") + std::strerror(errno) + ")"};
    const std::string out_path = std::string(tmpdir) + "/profile.png";
    struct Cleanup {
        std::string file, dir;
        ~Cleanup() {
            unlink(file.c_str());
            rmdir(dir.c_str());
        }
    } cleanup{out_path, tmpdir};

    struct Run {
        std::map<std::string, double> wall;
        double total;
        std::vector<double> steps;
    };
    std::vector<Run> runs;
    int H = 0, W = 0;
    Recorder rec;
    ldmind_options o;
    if (has_image) ldmind_options_init(&o);
    else ldmind_generate_options_init(&o);          // each task's own defaults (its fidelity)
    o.fidelity = p.get_number("fidelity", o.fidelity);
    o.steps = steps;
    o.sampler = sampler.c_str();
    o.progress = record_cb;
    o.user = &rec;
    for (int k = 0; k <= repeat; ++k) {                 // k = 0: warm-up, not counted
        const double start = now_s();
        Image lr;
        if (has_image) lr = ldmind_cli::load_image(image, PyPath(image).s);
        const double decode = now_s() - start;
        check_signal();
        if (has_image) {
            ldmind_status s = ldmind_output_size(pipe.p, lr.width, lr.height, scale, ow, oh, &H, &W);
            if (s != LDMIND_OK) library_failure(s);
        } else {
            W = ow;
            H = oh;
        }
        Buffer buf(static_cast<double>(H) * W * 3);
        rec.reset();
        if (has_image)
            run_call([&] { return ldmind_upscale(pipe.p, lr.rgb.data(), lr.width, lr.height, scale, ow, oh, &o, buf.get()); });
        else
            run_call([&] { return ldmind_generate(pipe.p, W, H, 0, 0, &o, buf.get()); });
        double t = now_s();
        {
            Image img;
            img.width = W;
            img.height = H;
            img.rgb.assign(buf.get(), buf.get() + static_cast<size_t>(H) * W * 3);
            FILE* f = std::fopen(out_path.c_str(), "wb");
            if (!f || !ldmind_cli::write_png(f, img)) {
                if (f) std::fclose(f);
                throw Fail{out_path + ": cannot write (" + std::strerror(errno) + ")"};
            }
            std::fclose(f);
        }
        const double write = now_s() - t;
        const double total = now_s() - start;
        Run r{rec.wall, total, rec.steps};
        r.wall["image decode"] = decode;
        r.wall["image encode+write"] = write;
        double sum = 0;
        for (const auto& [kk, v] : r.wall) sum += v;
        r.wall["other"] = std::max(0.0, total - sum);
        if (k) runs.push_back(r);
    }
    std::map<std::string, double> stages;
    for (const auto& s : STAGES) {
        std::vector<double> v;
        for (const auto& r : runs) v.push_back(r.wall.count(s) ? r.wall.at(s) : 0.0);
        stages[s] = median(v);
    }
    std::vector<double> totals, all_steps;
    for (const auto& r : runs) {
        totals.push_back(r.total);
        all_steps.insert(all_steps.end(), r.steps.begin(), r.steps.end());
    }
    const double total = median(totals);
    const double step_med = all_steps.empty() ? 0.0 : median(all_steps);
    const double step_p90 = all_steps.empty() ? 0.0 : percentile(all_steps, 90);
    const size_t count = all_steps.size() / std::max<size_t>(1, runs.size());
    const double liif = stages["LIIF queries"] / (static_cast<double>(H) * W / 1e6);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double peak = static_cast<double>(ru.ru_maxrss) * 1024.0;
    const std::string model = ldmind_model_name(pipe.p), used = ldmind_backend(pipe.p);

    // profile.table, line for line (no per-graph timer in the C API: the graph column is empty)
    std::vector<std::string> lines;
    lines.push_back(one_line(model) + " on " + used + ": " + (has_image && !image.empty() ? one_line(image) : "generate") +
                    " -> " + std::to_string(W) + "x" + std::to_string(H) + ", " + std::to_string(steps) + " steps (" + sampler +
                    "), median of " + std::to_string(repeat) + " after a warm-up");
    lines.push_back(fmtf("%-20s %10s %10s %6s", "stage", "wall ms", "graph ms", "share"));
    for (const auto& s : STAGES) {
        const double w = stages[s];
        lines.push_back(fmtf("%-20s %10.1f %10s %5.1f%%", s.c_str(), w * 1e3, "", total ? 100 * w / total : 0.0));
    }
    lines.push_back(fmtf("%-20s %10.1f", "total", total * 1e3));
    lines.push_back(fmtf("U-Net step: median %.1f ms, p90 %.1f ms (%zu per request)", step_med * 1e3, step_p90 * 1e3, count));
    lines.push_back(fmtf("LIIF queries: %.2f s per output megapixel", liif));
    lines.push_back(peak > 0 ? fmtf("peak RSS: %.0f MiB", peak / 1048576.0) : std::string("peak RSS: unknown"));
    std::string table;
    for (size_t k = 0; k < lines.size(); ++k) table += (k ? "\n" : "") + lines[k];
    say(one_line(std::string("backends: ") + ldmind_backend_reason(pipe.p)));   // as python -m runtime profile
    say(table);

    if (has_json) {
        std::string j = "{\n";
        j += " \"engines\": " + json_str(engines) + ",\n";
        j += " \"model\": " + json_str(model) + ",\n";
        j += " \"backend\": " + json_str(used) + ",\n";
        // the plan, as Python's: the backend of each graph and how it was chosen
        j += " \"graph_backends\": {\n";
        const std::vector<std::string> graphs = conditional ? std::vector<std::string>{"encoder", "unet_step", "decoder", "liif"}
                                                            : std::vector<std::string>{"unet_step", "decoder", "liif"};
        for (size_t k = 0; k < graphs.size(); ++k)
            j += "  " + json_str(graphs[k]) + ": " + json_str(ldmind_graph_backend(pipe.p, graphs[k].c_str())) +
                 (k + 1 < graphs.size() ? ",\n" : "\n");
        j += " },\n";
        j += " \"backend_reason\": " + json_str(ldmind_backend_reason(pipe.p)) + ",\n";
        j += " \"image\": " + (has_image ? json_str(image) : std::string("null")) + ",\n";
        j += " \"output\": [\n  " + std::to_string(W) + ",\n  " + std::to_string(H) + "\n ],\n";
        j += " \"steps\": " + std::to_string(steps) + ",\n";
        j += " \"sampler\": " + json_str(sampler) + ",\n";
        j += " \"repeat\": " + std::to_string(repeat) + ",\n";
        j += " \"fidelity\": " + json_num(o.fidelity) + ",\n";
        j += " \"stages_s\": {\n";
        for (size_t k = 0; k < STAGES.size(); ++k)
            j += "  " + json_str(STAGES[k]) + ": " + json_num(stages[STAGES[k]]) + (k + 1 < STAGES.size() ? ",\n" : "\n");
        j += " },\n";
        j += " \"total_s\": " + json_num(total) + ",\n";
        j += " \"graph_s\": {},\n";
        j += " \"unet_step_s\": {\n  \"median\": " + json_num(step_med) + ",\n  \"p90\": " + json_num(step_p90) +
             ",\n  \"count\": " + std::to_string(count) + "\n },\n";
        j += " \"liif_s_per_output_mpx\": " + json_num(liif) + ",\n";
        j += " \"peak_rss_bytes\": " + std::to_string(static_cast<long long>(peak)) + "\n}\n";
        const std::string tmp = json_path + ".tmp";
        FILE* f = std::fopen(tmp.c_str(), "wb");
        const bool ok = f && std::fputs(j.c_str(), f) >= 0 && std::fclose(f) == 0;
        if (!ok || std::rename(tmp.c_str(), json_path.c_str()) != 0) {
            const int err = errno;
            unlink(tmp.c_str());
            throw Fail{json_path + ": cannot write (" + std::strerror(err) + ")"};
        }
    }
    return 0;
}

}  // namespace ldmind_cli
