/* ldmind C API: arbitrary-scale super-resolution and generation on exported ldmind graphs.
 *
 * The same computation as the Python runtime (`runtime/pipeline.py`): the same sampler
 * schedules, the RNG contract of `ldmind_ref/core/noise.py`, the latent tile plan, the tiled LIIF
 * queries and back-projection, so that the same seed gives the same uint8 image.
 *
 * Conventions: opaque handles; every call returns an ldmind_status; on failure the message
 * (one line, the Python runtime's text) is available from ldmind_last_error() on the calling
 * thread until its next ldmind call.  Images are 8-bit RGB, row-major [height][width][3].
 * Caller-owned buffers only: nothing allocated by the library crosses this API except the
 * pipeline handle (ldmind_close frees it).
 *
 * Thread safety: one loaded pipeline may be used by any number of threads at once.
 */
#ifndef LDMIND_H
#define LDMIND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LDMIND_API_VERSION 4   /* 2: ldmind_open_ex, ldmind_backend_reason, ldmind_graph_backend; 3: ldmind_inspect;
                                  4: ldmind_generate_options_init (additive) */

#if defined(__GNUC__)
#define LDMIND_EXPORT __attribute__((visibility("default")))
#else
#define LDMIND_EXPORT
#endif

typedef enum ldmind_status {
    LDMIND_OK = 0,
    LDMIND_ERR_INPUT = 1,      /* a bad image, size, scale or option */
    LDMIND_ERR_ENGINE = 2,     /* missing/invalid engine directory, manifest, graph or backend */
    LDMIND_ERR_MEMORY = 3,     /* the request or the machine is too small */
    LDMIND_ERR_NUMERICAL = 4,  /* a graph produced NaN or infinity: no image */
    LDMIND_ERR_CANCELLED = 5,  /* the progress callback asked to stop */
    LDMIND_ERR_INTERNAL = 6    /* a bug */
} ldmind_status;

typedef struct ldmind_pipeline ldmind_pipeline;

/* Progress: stage ("encode", "denoise", "decode", "render WxH", "back-project"), done of
 * total.  Return non-zero to cancel the call (it returns LDMIND_ERR_CANCELLED). */
typedef int (*ldmind_progress_fn)(const char *stage, int done, int total, void *user);

typedef struct ldmind_options {
    int steps;              /* sampler steps (default 10) */
    double eta;             /* DDIM eta (default 1); unused by dpm++2m */
    int64_t seed;           /* sample j uses seed + j (default 0) */
    int num_samples;        /* images per call (default 1) */
    int backproject;        /* back-projection iterations, 0..100 (default 10; upscale only) */
    const char *sampler;    /* "dpm++2m" (default) or "ddim" */
    const char *schedule;   /* DDIM: "full" (default) or "paper" */
    int tile;               /* LIIF queries per graph call (0: the manifest's query_chunk) */
    int latent_tile;        /* latent tile side in cells (-1: chosen from the model) */
    int latent_overlap;     /* overlap in cells (-1: the default, at least 8 % of the tile) */
    ldmind_progress_fn progress; /* may be NULL */
    void *user;             /* passed to progress */
    /* added after the fields above, whose offsets are unchanged; the struct grew, so a program
     * built against an older ldmind.h must be rebuilt (ldmind_options_init sets the default) */
    double fidelity;        /* 0..1, detail against faithfulness (0: the paper's sampler; default 0.25 for
                             * upscale, 0 for generation: ldmind_generate_options_init) */
} ldmind_options;

/* Fill *o with the defaults above (upscale's). */
LDMIND_EXPORT void ldmind_options_init(ldmind_options *o);
/* The same with generation's own defaults (its fidelity: contract DEFAULT_GENERATION_FIDELITY). */
LDMIND_EXPORT void ldmind_generate_options_init(ldmind_options *o);

/* Text of the last failure on this thread ("" if none). */
LDMIND_EXPORT const char *ldmind_last_error(void);

/* Open an engine directory (`python -m export --out DIR`): manifest parsed, format version
 * and every graph's sha256 verified (verify = 0 skips the checksums).  backend: "auto" (NULL),
 * "cpu" (ONNX Runtime), "cuda" (ONNX Runtime's CUDA provider, when the linked ONNX Runtime has
 * it), "tensorrt", "openvino" or "openvino-bf16" (where the library was built with OpenVINO).
 * "auto": TensorRT or CUDA where they run, else each graph on the fastest CPU backend allowed
 * for it, by the per-graph times the Python runtime recorded for this machine and export
 * (runtime/cpp/README.md, "Backends").  precision: "auto" (NULL), "fp32" (auto never picks
 * bf16) or "bf16" (auto runs every graph on openvino-bf16); an explicit backend must run it.
 * threads: intra-op threads per graph (0: the backend decides).  ldmind_open is
 * ldmind_open_ex with precision "auto". */
LDMIND_EXPORT ldmind_status ldmind_open_ex(const char *dir, const char *backend, const char *precision, int threads,
                                           int verify, ldmind_pipeline **out);
LDMIND_EXPORT ldmind_status ldmind_open(const char *dir, const char *backend, int threads, int verify,
                          ldmind_pipeline **out);
LDMIND_EXPORT void ldmind_close(ldmind_pipeline *p);

/* An engine directory described without loading its graphs (what `ldmind info` prints, as
 * `python -m runtime info`): the manifest checked as ldmind_open_ex checks it, and with verify,
 * every graph also opened by ONNX Runtime with no optimisation (cheap: nothing is compiled);
 * the facts and plan functions below answer what ldmind_open_ex(dir, "auto", "auto", 0, verify)
 * would run, without opening a GPU backend or compiling an OpenVINO graph (a recorded choice
 * that fails to load is only found by loading it).  The other calls on it fail with
 * LDMIND_ERR_ENGINE.  ldmind_close frees it. */
LDMIND_EXPORT ldmind_status ldmind_inspect(const char *dir, int verify, ldmind_pipeline **out);

/* Facts of the loaded model. */
LDMIND_EXPORT int ldmind_is_conditional(const ldmind_pipeline *p);   /* 1: super-resolution, 0: generation */
LDMIND_EXPORT const char *ldmind_model_name(const ldmind_pipeline *p);
LDMIND_EXPORT const char *ldmind_backend(const ldmind_pipeline *p);   /* one backend's name, or "mixed" */
/* The backend running `graph` ("encoder", "unet_step", "decoder", "liif"; "" for another name),
 * and how it was chosen: "requested", or "auto: ..." (the Python runtime's backend_reason). */
LDMIND_EXPORT const char *ldmind_graph_backend(const ldmind_pipeline *p, const char *graph);
LDMIND_EXPORT const char *ldmind_backend_reason(const ldmind_pipeline *p);

/* Output size of an upscale: scale > 0, or (scale = 0 and) out_width/out_height > 0. */
LDMIND_EXPORT ldmind_status ldmind_output_size(const ldmind_pipeline *p, int width, int height, double scale,
                                 int out_width, int out_height, int *H, int *W);

/* Super-resolve rgb [height][width][3] by scale (or to out_width x out_height when scale is
 * 0) into out, which holds num_samples * H * W * 3 bytes (ldmind_output_size). */
LDMIND_EXPORT ldmind_status ldmind_upscale(const ldmind_pipeline *p, const uint8_t *rgb, int width, int height,
                             double scale, int out_width, int out_height, const ldmind_options *o,
                             uint8_t *out);

/* Unconditional samples at out_width x out_height into out (num_samples * H * W * 3 bytes),
 * sampled on a latent_h x latent_w latent when both are > 0; when either is 0, on the output's
 * own scale (H / downsample x W / downsample cells, rounded down to the tile alignment; tiled
 * when larger than the training latent); when either is < 0, on the model's generation latent
 * stretched to the size (the zoom). */
LDMIND_EXPORT ldmind_status ldmind_generate(const ldmind_pipeline *p, int out_width, int out_height, int latent_h,
                              int latent_w, const ldmind_options *o, uint8_t *out);

/* The sampled latents of an upscale, cropped to the LR area: float32 [num_samples][c][h][w];
 * *c, *h, *w receive the shape; out must hold num_samples * c * h * w floats, where
 * c * h * w is given by ldmind_upscale_latent_shape. */
LDMIND_EXPORT ldmind_status ldmind_upscale_latent_shape(const ldmind_pipeline *p, int width, int height,
                                          int *c, int *h, int *w);
LDMIND_EXPORT ldmind_status ldmind_upscale_latents(const ldmind_pipeline *p, const uint8_t *rgb, int width,
                                     int height, const ldmind_options *o, float *out);

#ifdef __cplusplus
}
#endif
#endif /* LDMIND_H */
