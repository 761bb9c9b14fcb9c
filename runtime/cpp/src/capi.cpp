// The C API (include/ldmind.h): a thin layer over ldmind::core::Pipeline that turns every failure
// into a status code and a one-line message kept per thread.
#include <new>
#include <string>

#include "core.hpp"

struct ldmind_pipeline {
    ldmind::core::Pipeline impl;
    ldmind_pipeline(const char* dir, const char* backend, const char* precision, int threads, bool verify,
                    bool load = true)
        : impl(dir, backend ? backend : "auto", precision ? precision : "auto", threads, verify, load) {}
};

namespace {

thread_local std::string last_error;

template <class F>
ldmind_status guarded(F&& f) {
    last_error.clear();
    try {
        f();
        return LDMIND_OK;
    } catch (const ldmind::core::Error& e) {
        last_error = e.what();
        return e.code;
    } catch (const std::bad_alloc&) {
        last_error = ldmind::contract::OUT_OF_MEMORY;
        return LDMIND_ERR_MEMORY;
    } catch (const std::exception& e) {
        last_error = std::string("internal error: ") + e.what();
        return LDMIND_ERR_INTERNAL;
    } catch (...) {
        last_error = "internal error: unknown exception";
        return LDMIND_ERR_INTERNAL;
    }
}

ldmind::core::Options options(const ldmind_options* o) {
    ldmind::core::Options r;
    if (!o) return r;
    r.steps = o->steps;
    r.eta = o->eta;
    r.fidelity = o->fidelity;
    r.seed = o->seed;
    r.num_samples = o->num_samples;
    r.backproject = o->backproject;
    r.sampler = o->sampler ? o->sampler : ldmind::contract::DEFAULT_SAMPLER;
    r.schedule = o->schedule ? o->schedule : ldmind::contract::DEFAULT_DDIM_SCHEDULE;
    r.tile = o->tile;
    r.latent_tile = o->latent_tile;
    r.latent_overlap = o->latent_overlap;
    r.progress = o->progress;
    r.user = o->user;
    return r;
}

void need(const void* p, const char* what) {
    if (!p) ldmind::core::input_error(std::string(what) + " is NULL");
}

}  // namespace

extern "C" {

void ldmind_options_init(ldmind_options* o) {
    if (!o) return;
    const ldmind::core::Options d;
    o->steps = d.steps;
    o->eta = d.eta;
    o->fidelity = d.fidelity;
    o->seed = d.seed;
    o->num_samples = d.num_samples;
    o->backproject = d.backproject;
    o->sampler = ldmind::contract::DEFAULT_SAMPLER;
    o->schedule = ldmind::contract::DEFAULT_DDIM_SCHEDULE;
    o->tile = 0;
    o->latent_tile = -1;
    o->latent_overlap = -1;
    o->progress = nullptr;
    o->user = nullptr;
}

void ldmind_generate_options_init(ldmind_options* o) {
    if (!o) return;
    ldmind_options_init(o);
    o->fidelity = ldmind::contract::DEFAULT_GENERATION_FIDELITY;
}

const char* ldmind_last_error(void) { return last_error.c_str(); }

ldmind_status ldmind_open_ex(const char* dir, const char* backend, const char* precision, int threads, int verify,
                             ldmind_pipeline** out) {
    return guarded([&] {
        need(dir, "dir");
        need(out, "out");
        *out = nullptr;
        *out = new ldmind_pipeline(dir, backend, precision, threads, verify != 0);
    });
}

ldmind_status ldmind_open(const char* dir, const char* backend, int threads, int verify, ldmind_pipeline** out) {
    return ldmind_open_ex(dir, backend, nullptr, threads, verify, out);
}

ldmind_status ldmind_inspect(const char* dir, int verify, ldmind_pipeline** out) {
    return guarded([&] {
        need(dir, "dir");
        need(out, "out");
        *out = nullptr;
        *out = new ldmind_pipeline(dir, "auto", "auto", 0, verify != 0, false);
    });
}

void ldmind_close(ldmind_pipeline* p) { delete p; }

int ldmind_is_conditional(const ldmind_pipeline* p) { return p && p->impl.bundle().conditional ? 1 : 0; }
const char* ldmind_model_name(const ldmind_pipeline* p) { return p ? p->impl.bundle().name.c_str() : ""; }
const char* ldmind_backend(const ldmind_pipeline* p) { return p ? p->impl.backend().c_str() : ""; }
const char* ldmind_backend_reason(const ldmind_pipeline* p) { return p ? p->impl.backend_reason().c_str() : ""; }

const char* ldmind_graph_backend(const ldmind_pipeline* p, const char* graph) {
    if (!p || !graph) return "";
    for (const auto& [g, backend] : p->impl.graph_backends())
        if (g == graph) return backend.c_str();
    return "";
}

ldmind_status ldmind_output_size(const ldmind_pipeline* p, int width, int height, double scale, int out_width,
                                 int out_height, int* H, int* W) {
    return guarded([&] {
        need(p, "pipeline");
        need(H, "H");
        need(W, "W");
        p->impl.output_size(height, width, scale, out_width, out_height, H, W);
    });
}

ldmind_status ldmind_upscale(const ldmind_pipeline* p, const uint8_t* rgb, int width, int height, double scale,
                             int out_width, int out_height, const ldmind_options* o, uint8_t* out) {
    return guarded([&] {
        need(p, "pipeline");
        need(rgb, "rgb");
        need(out, "out");
        p->impl.upscale(rgb, height, width, scale, out_width, out_height, options(o), out);
    });
}

ldmind_status ldmind_generate(const ldmind_pipeline* p, int out_width, int out_height, int latent_h, int latent_w,
                              const ldmind_options* o, uint8_t* out) {
    return guarded([&] {
        need(p, "pipeline");
        need(out, "out");
        p->impl.generate(out_width, out_height, latent_h, latent_w, options(o), out);
    });
}

ldmind_status ldmind_upscale_latent_shape(const ldmind_pipeline* p, int width, int height, int* c, int* h, int* w) {
    return guarded([&] {
        need(p, "pipeline");
        p->impl.latent_shape(height, width, c, h, w);
    });
}

ldmind_status ldmind_upscale_latents(const ldmind_pipeline* p, const uint8_t* rgb, int width, int height,
                                     const ldmind_options* o, float* out) {
    return guarded([&] {
        need(p, "pipeline");
        need(rgb, "rgb");
        need(out, "out");
        std::vector<float> z = p->impl.upscale_latents(rgb, height, width, options(o));
        std::copy(z.begin(), z.end(), out);
    });
}

}  // extern "C"
