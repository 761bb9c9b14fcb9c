// ldmind C++ API: a thin header-only layer over the C API (ldmind.h) -- RAII handles,
// exceptions, std::vector images.  Everything computes in the library's one core.
//
//   ldmind::Pipeline pipe("engines/small");             // verifies the manifest and graphs
//   ldmind::Options o;  o.steps = 10;  o.seed = 7;
//   std::vector<ldmind::Image> out = pipe.upscale(rgb, width, height, 4.0, o);
//
// One Pipeline may be shared by any number of threads.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ldmind.h"

namespace ldmind {

class Error : public std::runtime_error {
  public:
    Error(ldmind_status s, const std::string& m) : std::runtime_error(m), status(s) {}
    ldmind_status status;
};

// ldmind_options with the library's defaults
struct Options : ldmind_options {
    Options() { ldmind_options_init(this); }
};

struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;     // [height][width][3]
};

class Pipeline {
  public:
    explicit Pipeline(const std::string& dir, const std::string& backend = "auto", int threads = 0,
                      bool verify = true, const std::string& precision = "auto") {
        check(ldmind_open_ex(dir.c_str(), backend.c_str(), precision.c_str(), threads, verify ? 1 : 0, &p_));
    }
    ~Pipeline() { ldmind_close(p_); }
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;
    Pipeline(Pipeline&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Pipeline& operator=(Pipeline&& o) noexcept { std::swap(p_, o.p_); return *this; }

    bool conditional() const { return ldmind_is_conditional(p_) != 0; }
    std::string model_name() const { return ldmind_model_name(p_); }
    std::string backend() const { return ldmind_backend(p_); }
    std::string graph_backend(const std::string& graph) const { return ldmind_graph_backend(p_, graph.c_str()); }
    std::string backend_reason() const { return ldmind_backend_reason(p_); }

    // super-resolve by `scale`, or (scale = 0) to out_width x out_height
    std::vector<Image> upscale(const uint8_t* rgb, int width, int height, double scale, const Options& o = Options(),
                               int out_width = 0, int out_height = 0) const {
        int H = 0, W = 0;
        check(ldmind_output_size(p_, width, height, scale, out_width, out_height, &H, &W));
        std::vector<uint8_t> all(bytes(o, H, W));
        check(ldmind_upscale(p_, rgb, width, height, scale, out_width, out_height, &o, all.data()));
        return split(all, o, H, W);
    }

    std::vector<Image> generate(int out_width, int out_height, const Options& o = Options(), int latent_h = 0,
                                int latent_w = 0) const {
        std::vector<uint8_t> all(bytes(o, out_height, out_width));
        check(ldmind_generate(p_, out_width, out_height, latent_h, latent_w, &o, all.data()));
        return split(all, o, out_height, out_width);
    }

  private:
    ldmind_pipeline* p_ = nullptr;

    static void check(ldmind_status s) {
        if (s != LDMIND_OK) throw Error(s, ldmind_last_error());
    }
    static size_t bytes(const Options& o, int H, int W) {
        if (o.num_samples < 1 || H < 1 || W < 1) return 0;   // the library refuses it with its own line
        return static_cast<size_t>(o.num_samples) * static_cast<size_t>(H) * static_cast<size_t>(W) * 3;
    }
    static std::vector<Image> split(const std::vector<uint8_t>& all, const Options& o, int H, int W) {
        std::vector<Image> out(static_cast<size_t>(o.num_samples));
        const size_t one = static_cast<size_t>(H) * static_cast<size_t>(W) * 3;
        for (size_t k = 0; k < out.size(); ++k) {
            out[k].width = W;
            out[k].height = H;
            out[k].rgb.assign(all.begin() + static_cast<std::ptrdiff_t>(k * one),
                              all.begin() + static_cast<std::ptrdiff_t>((k + 1) * one));
        }
        return out;
    }
};

}  // namespace ldmind
