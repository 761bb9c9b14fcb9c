// The sampling pipeline on exported graphs (runtime/pipeline.py over
// ldmind_ref/core/tiled_sampling.py): the same tiles, blends, noise draws, query windows and
// roundings, in the same order, so that the same seed gives the same image.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core.hpp"

namespace ldmind::core {

namespace {

int64_t floordiv(int64_t a, int64_t b) { int64_t q = a / b; return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q; }

void tick(const Options& o, const std::string& stage, int done, int total) {
    if (o.progress && o.progress(stage.c_str(), done, total, o.user) != 0)
        throw Error(LDMIND_ERR_CANCELLED, "cancelled by the progress callback during " + stage);
}

template <class T>
const T& finite(const T& t, const char* graph, const std::string& where = "") {
    for (float v : t.data)
        if (!std::isfinite(v))
            throw Error(LDMIND_ERR_NUMERICAL, contract::fill(contract::NOT_FINITE, {graph, where}));
    return t;
}

// tiles ks of x [B, C, h, w] stacked along the batch, tile-major: [n * B, C, th, tw]
std::vector<float> gather(const float* x, int B, int C, int h, int w, const TilePlan& p, size_t k0, size_t k1) {
    std::vector<float> out((k1 - k0) * static_cast<size_t>(B) * C * p.th * p.tw);
    float* o = out.data();
    for (size_t k = k0; k < k1; ++k) {
        int y0 = p.ys[k / p.xs.size()], x0 = p.xs[k % p.xs.size()];
        for (int bc = 0; bc < B * C; ++bc)
            for (int y = 0; y < p.th; ++y) {
                const float* src = x + (static_cast<size_t>(bc) * h + y0 + y) * w + x0;
                std::memcpy(o, src, static_cast<size_t>(p.tw) * sizeof(float));
                o += p.tw;
            }
    }
    return out;
}

// add tiles k0, k0 + 1, ... of `tiles` [n, B, C, th, tw] into out [B, C, h, w] with their weights
void blend(float* out, const float* tiles, int B, int C, int h, int w, const TilePlan& p, size_t k0, size_t n) {
    (void)h;
    for (size_t t = 0; t < n; ++t) {
        size_t k = k0 + t;
        int y0 = p.ys[k / p.xs.size()], x0 = p.xs[k % p.xs.size()];
        for (int bc = 0; bc < B * C; ++bc)
            for (int y = 0; y < p.th; ++y) {
                const float* src = tiles + ((t * static_cast<size_t>(B * C) + bc) * p.th + y) * p.tw;
                float* dst = out + (static_cast<size_t>(bc) * h + y0 + y) * w + x0;
                for (int x = 0; x < p.tw; ++x) dst[x] += src[x] * p.weight(k, y, x);
            }
    }
}

std::vector<std::pair<size_t, size_t>> groups(const TilePlan& p, int tile_batch) {
    std::vector<std::pair<size_t, size_t>> g;
    size_t step = static_cast<size_t>(std::max(1, tile_batch));
    for (size_t a = 0; a < p.size(); a += step) g.emplace_back(a, std::min(a + step, p.size()));
    return g;
}

int count(int n) {
    if (n < 1) input_error(contract::fill(contract::POSITIVE_INTEGER, {"num_samples", std::to_string(n)}));
    if (n > contract::MAX_SAMPLES)
        input_error(contract::fill(contract::TOO_MANY_SAMPLES, {std::to_string(contract::MAX_SAMPLES), std::to_string(n)}));
    return n;
}

}  // namespace

Pipeline::Pipeline(const std::string& dir, const std::string& backend, const std::string& precision, int threads,
                   bool verify, bool load)
    : b_(load_bundle(dir, verify)) {
    if (threads < 0) input_error("threads must be >= 0, got " + std::to_string(threads));
    if (!load && verify) verify_graphs(b_);
    Engines e = create_engines(b_, backend, precision, threads, load);
    engines_ = std::move(e.engines);
    backend_ = std::move(e.backend);
    reason_ = std::move(e.reason);
    graph_backends_ = std::move(e.graph_backends);
    for (const auto& kv : engines_)
        if (int m = kv.second->max_batch(); m > 0) max_batch_ = max_batch_ ? std::min(max_batch_, m) : m;
}

const Engine& Pipeline::engine(const char* graph) const {
    if (engines_.empty())
        engine_error(b_.root + ": opened without its graphs (ldmind_inspect), to be described, not run");
    return *engines_.at(graph);
}

void Pipeline::output_size(int h, int w, double scale, int W_out, int H_out, int* H, int* W) const {
    const bool has_size = W_out != 0 || H_out != 0;
    if (scale != 0 && has_size) input_error(contract::SCALE_AND_SIZE);
    if (scale == 0 && !has_size) input_error(contract::SCALE_OR_SIZE);
    if (has_size) {
        for (int v : {W_out, H_out})
            if (v < 1) input_error(contract::fill(contract::POSITIVE_INTEGER, {"output width/height", std::to_string(v)}));
        *H = H_out;
        *W = W_out;
        return;
    }
    if (!std::isfinite(scale) || scale <= 0) input_error(contract::fill(contract::POSITIVE_NUMBER, {"scale", py_float(scale)}));
    double hh = std::floor(scale * h + 0.5), ww = std::floor(scale * w + 0.5);
    if (hh < 1 || ww < 1)
        input_error(contract::fill(contract::EMPTY_OUTPUT, {py_float(scale), std::to_string(w), std::to_string(h)}));
    if (hh > 1e9 || ww > 1e9) input_error("scale " + py_float(scale) + " gives an output too large to address");
    *H = static_cast<int>(hh);
    *W = static_cast<int>(ww);
}

std::vector<Step> Pipeline::schedule(const Options& o, bool conditional) const {
    const int T = static_cast<int>(b_.alpha_bar.size());
    if (o.steps < 1 || o.steps > T)
        input_error(contract::fill(contract::STEPS, {std::to_string(T), std::to_string(o.steps)}));
    if (!std::isfinite(o.eta) || o.eta < 0) input_error(contract::fill(contract::ETA, {py_float(o.eta)}));
    std::vector<Step> out;
    try {
        out = sampling_schedule(b_.alpha_bar, o.steps, o.eta, o.schedule, o.sampler);
    } catch (const std::invalid_argument& e) {
        input_error(e.what());
    }
    // noise.fidelity_arg, after the schedule's checks as runtime/pipeline.py orders them
    if (!(o.fidelity >= contract::MIN_FIDELITY && o.fidelity <= contract::MAX_FIDELITY))
        input_error(contract::fill(contract::FIDELITY, {py_float(o.fidelity)}));
    if (o.fidelity != 0) out = sampling_schedule(b_.alpha_bar, o.steps, o.eta, o.schedule, o.sampler, o.fidelity,
                                                 conditional);
    return out;
}

int64_t Pipeline::working_bytes(int64_t n, int64_t h, int64_t w) const {
    return 4 * h * w * (n * b_.feature_channels + 4 * n * b_.z_channels + b_.z_channels);
}

int Pipeline::tile_batch(const TilePlan& p, int n) const {
    int64_t t = std::max<int64_t>(1, contract::TILE_BATCH_CELLS / std::max<int64_t>(1, static_cast<int64_t>(p.th) * p.tw * n));
    int64_t one = graph_bytes(b_.costs, n, p.th, p.tw);
    t = std::max<int64_t>(1, std::min(t, floordiv(graph_budget(), std::max<int64_t>(1, one))));
    if (max_batch_) t = std::min<int64_t>(t, std::max(1, max_batch_ / n));
    return static_cast<int>(t);
}

TilePlan Pipeline::plan(int h, int w, int steps, int n, int latent_tile, int latent_overlap, bool decoder_only,
                        int align) const {
    if (latent_tile < -1)
        input_error(contract::fill(contract::NON_NEGATIVE_INTEGER, {"latent tile", std::to_string(latent_tile)}));
    if (latent_overlap < -1)
        input_error(contract::fill(contract::NON_NEGATIVE_INTEGER, {"latent overlap", std::to_string(latent_overlap)}));
    std::map<std::string, GraphCost> costs;
    for (const auto& [k, c] : b_.costs)
        if (!decoder_only || k == "decoder") costs[k] = c;
    const int batch = batch_of(n);
    const int64_t budget = graph_budget();
    Fits fits = [&](int th, int tw) { return graph_bytes(costs, batch, th, tw) <= budget; };
    TilePlan p;
    try {
        p = choose(h, w, align, b_.train_latent, costs, steps, latent_tile, latent_overlap, fits);
    } catch (const std::invalid_argument& e) {
        input_error(e.what());
    }
    check_latent(costs, static_cast<int64_t>(batch) * std::min<int64_t>(static_cast<int64_t>(p.size()), tile_batch(p, batch)),
                 p.th, p.tw);
    return p;
}

void Pipeline::latent_shape(int h, int w, int* c, int* lh, int* lw) const {
    if (h < 1 || w < 1) input_error("input image must be at least 1x1 pixels, got " + std::to_string(w) + "x" + std::to_string(h));
    *c = b_.z_channels;
    *lh = lr_latent(h);
    *lw = lr_latent(w);
}

void Pipeline::need_conditional(bool want) const {
    if (b_.conditional == want) return;
    input_error(contract::fill(want ? contract::GENERATION_MODEL : contract::SR_MODEL, {b_.root, b_.name}));
}

std::vector<std::pair<int, int>> Pipeline::batches(int n) const {
    const int step = batch_of(n);
    std::vector<std::pair<int, int>> out;
    for (int a = 0; a < n; a += step) out.emplace_back(a, std::min(a + step, n));
    return out;
}

std::vector<float> Pipeline::sample(const std::vector<float>* cond, int c, int h, int w,
                                    const std::vector<Step>& sched, const Options& o, const TilePlan& p) const {
    const int N = count(o.num_samples);
    const auto bs = batches(N);
    const int total = static_cast<int>(sched.size() * bs.size());
    int done = 0;
    tick(o, contract::STAGE_DENOISE, 0, total);
    const size_t one = static_cast<size_t>(c) * h * w;
    std::vector<float> result(one * N);
    const Engine& unet = engine("unet_step");
    for (const auto& [a, b] : bs) {
        const int nb = b - a;
        const auto gs = groups(p, tile_batch(p, nb));
        std::vector<std::vector<float>> cond_tiles;    // per group: [n * nb, c, th, tw], tile k repeated nb times
        if (cond) {
            for (const auto& [k0, k1] : gs) {
                std::vector<float> t = gather(cond->data(), 1, c, h, w, p, k0, k1);
                const size_t per = static_cast<size_t>(c) * p.th * p.tw;
                std::vector<float> rep((k1 - k0) * nb * per);
                for (size_t k = 0; k < k1 - k0; ++k)
                    for (int j = 0; j < nb; ++j)
                        std::memcpy(&rep[(k * nb + j) * per], &t[k * per], per * sizeof(float));
                cond_tiles.push_back(std::move(rep));
            }
        }
        const size_t all = one * nb;
        auto noise = [&](int64_t stream, std::vector<float>& out) {   // sample j of the call: seed + j
            for (int j = 0; j < nb; ++j) gaussian(o.seed + a + j, stream, one, &out[j * one]);
        };
        std::vector<float> z(all), eps(all), out_all(all);
        std::vector<double> d_prev;
        noise(0, z);
        if (sched.front().from_cond)            // fidelity's window starts from the noised cond
            initial_latent(z.data(), static_cast<size_t>(nb), cond->data(), one, sched.front().alpha_bar_t);
        for (size_t k = 1; k <= sched.size(); ++k) {
            const Step& st = sched[k - 1];
            if (st.sigma_t > 0) noise(static_cast<int64_t>(k), eps);
            else std::fill(eps.begin(), eps.end(), 0.0f);
            std::fill(out_all.begin(), out_all.end(), 0.0f);
            const float ab_t = static_cast<float>(st.alpha_bar_t), ab_prev = static_cast<float>(st.alpha_bar_prev),
                        sigma = static_cast<float>(st.sigma_t);
            for (size_t g = 0; g < gs.size(); ++g) {
                const auto [k0, k1] = gs[g];
                const int64_t rows = static_cast<int64_t>((k1 - k0) * nb);
                std::vector<float> zt = gather(z.data(), nb, c, h, w, p, k0, k1);
                std::vector<float> et = gather(eps.data(), nb, c, h, w, p, k0, k1);
                std::vector<int64_t> ts(static_cast<size_t>(rows), st.t);
                const std::vector<int64_t> shape{rows, c, p.th, p.tw};
                std::vector<Input> in{{"z_t", shape, zt.data()}};
                if (cond) in.push_back({"cond", shape, cond_tiles[g].data()});
                in.push_back({"timestep", {rows}, nullptr, ts.data()});
                in.push_back({"alpha_bar_t", {1}, &ab_t});
                in.push_back({"alpha_bar_prev", {1}, &ab_prev});
                in.push_back({"sigma_t", {1}, &sigma});
                in.push_back({"noise", shape, et.data()});
                auto r = unet.run(in, {"z_prev", "pred_z0"});
                const std::string at = " at t=" + std::to_string(st.t);
                finite(r[0], "unet_step", at);
                finite(r[1], "unet_step", at);
                blend(out_all.data(), (st.solver ? r[1] : r[0]).data.data(), nb, c, h, w, p, k0, k1 - k0);
            }
            if (st.solver) {      // the multistep update on the whole latent, float64 (diffusion.solver_update)
                std::vector<double> d(out_all.begin(), out_all.end());
                for (size_t q = 0; q < all; ++q) {
                    double v = st.c_x * static_cast<double>(z[q]) + st.c_d * d[q];
                    if (st.c_d_prev != 0) v = v + st.c_d_prev * d_prev[q];
                    z[q] = static_cast<float>(v);
                }
                d_prev = std::move(d);
            } else {
                z.swap(out_all);
            }
            tick(o, contract::STAGE_DENOISE, ++done, total);
        }
        std::copy(z.begin(), z.end(), result.begin() + static_cast<std::ptrdiff_t>(one * a));
    }
    return result;
}

std::vector<float> Pipeline::latents_padded(const uint8_t* rgb, int h, int w, const Options& o, int* ch, int* cw) const {
    const int unit = std::max(1, b_.unet_multiple * b_.ae_downsample / b_.cond_scale);
    const int Hp = (h + unit - 1) / unit * unit, Wp = (w + unit - 1) / unit * unit;
    // to_float, then mirror-pad ('symmetric') on the bottom/right: float32 [1, 3, Hp, Wp]
    std::vector<float> x(static_cast<size_t>(3) * Hp * Wp);
    auto mirror = [](int i, int n) { int j = i % (2 * n); return j < n ? j : 2 * n - 1 - j; };
    for (int y = 0; y < Hp; ++y)
        for (int xx = 0; xx < Wp; ++xx) {
            const uint8_t* px = rgb + (static_cast<size_t>(mirror(y, h)) * w + mirror(xx, w)) * 3;
            for (int c = 0; c < 3; ++c)
                x[(static_cast<size_t>(c) * Hp + y) * Wp + xx] = static_cast<float>(px[c]) / 127.5f - 1.0f;
        }
    *ch = lr_latent(Hp);
    *cw = lr_latent(Wp);
    const std::vector<Step> sched = schedule(o, true);    // refuses bad options before the encoder runs
    const int n = count(o.num_samples);
    const TilePlan p = plan(*ch, *cw, o.steps, n, o.latent_tile, o.latent_overlap, false, b_.tile_align);
    const int r = std::max(1, b_.cond_scale / b_.ae_downsample);   // images.latent_per_lr_pixel
    const TilePlan lp = p.scaled(r);
    const auto gs = groups(p, tile_batch(p, 1));
    const Engine& enc = engine("encoder");
    std::vector<float> cond(static_cast<size_t>(b_.z_channels) * p.h * p.w, 0.0f);
    for (size_t g = 0; g < gs.size(); ++g) {
        const auto [k0, k1] = gs[g];
        std::vector<float> t = gather(x.data(), 1, 3, Hp, Wp, lp, k0, k1);
        auto r_ = enc.run({{"lr", {static_cast<int64_t>(k1 - k0), 3, lp.th, lp.tw}, t.data()}}, {"cond"});
        finite(r_[0], "encoder");
        blend(cond.data(), r_[0].data.data(), 1, b_.z_channels, p.h, p.w, p, k0, k1 - k0);
        tick(o, contract::STAGE_ENCODE, static_cast<int>(g) + 1, static_cast<int>(gs.size()));
    }
    return sample(&cond, b_.z_channels, p.h, p.w, sched, o, p);
}

std::vector<float> Pipeline::upscale_latents(const uint8_t* rgb, int h, int w, const Options& o) const {
    need_conditional(true);
    int c, lh, lw;
    latent_shape(h, w, &c, &lh, &lw);
    return cropped_latents(rgb, h, w, o);
}

// the sampled latents cropped to the LR area (inputs checked by the caller)
std::vector<float> Pipeline::cropped_latents(const uint8_t* rgb, int h, int w, const Options& o) const {
    const int c = b_.z_channels, lh = lr_latent(h), lw = lr_latent(w);
    int ch, cw;
    std::vector<float> z = latents_padded(rgb, h, w, o, &ch, &cw);
    const int N = o.num_samples;
    std::vector<float> out(static_cast<size_t>(N) * c * lh * lw);
    for (int nc = 0; nc < N * c; ++nc)
        for (int y = 0; y < lh; ++y)
            std::memcpy(&out[(static_cast<size_t>(nc) * lh + y) * lw], &z[(static_cast<size_t>(nc) * ch + y) * cw],
                        static_cast<size_t>(lw) * sizeof(float));
    return out;
}

void Pipeline::render(const std::vector<float>& z, int N, int h, int w, int H, int W, const Options& o,
                      uint8_t* out) const {
    if (o.tile < 0) input_error("tile must be a positive integer, got " + std::to_string(o.tile));
    // the manifest's query_chunk, or less where the backend is faster so (runtime/pipeline.py)
    const int preferred = engine("liif").query_tile();
    const int chunk = o.tile > 0 ? o.tile : std::min(b_.query_chunk, preferred > 0 ? preferred : b_.query_chunk);
    const int c = b_.z_channels;
    const TilePlan p = plan(h, w, 0, N, o.latent_tile, o.latent_overlap, true, 1);
    // the decoder runs on every batch first (as the Python runtime), then each batch is queried
    std::vector<std::vector<float>> features;
    for (const auto& [a, b] : batches(N))
        features.push_back(decode(&z[static_cast<size_t>(a) * c * h * w], b - a, h, w, p, o));
    const int band = render_band(p);
    size_t k = 0;
    for (const auto& [a, b] : batches(N))
        query(features[k++], b - a, h, w, H, W, band, chunk, o, out + static_cast<size_t>(a) * H * W * 3);
}

std::vector<float> Pipeline::decode(const float* z, int N, int h, int w, const TilePlan& p, const Options& o) const {
    const int c = b_.z_channels, C = b_.feature_channels;
    const auto gs = groups(p, tile_batch(p, N));
    const Engine& dec = engine("decoder");
    std::vector<float> f(static_cast<size_t>(N) * C * h * w, 0.0f);
    for (size_t g = 0; g < gs.size(); ++g) {
        const auto [k0, k1] = gs[g];
        std::vector<float> t = gather(z, N, c, h, w, p, k0, k1);
        auto r = dec.run({{"z", {static_cast<int64_t>((k1 - k0) * N), c, p.th, p.tw}, t.data()}}, {"features"});
        finite(r[0], "decoder");
        blend(f.data(), r[0].data.data(), N, C, h, w, p, k0, k1 - k0);
        tick(o, contract::STAGE_DECODE, static_cast<int>(g) + 1, static_cast<int>(gs.size()));
    }
    return f;
}

// LIIF queries band by band of latent rows, `chunk` pixels per call, straight into uint8
// (runtime/tiling.py render_into over ldmind_ref/core/tiled_sampling.queries)
void Pipeline::query(const std::vector<float>& f, int N, int h, int w, int H, int W, int band, int chunk,
                     const Options& o, uint8_t* out) const {
    const int C = b_.feature_channels;
    const auto bs = bands(H, h, band);
    int total = 0;
    for (const auto& bd : bs) total += static_cast<int>((static_cast<int64_t>(bd.i1 - bd.i0) * W + chunk - 1) / chunk);
    const std::string label = std::string(contract::STAGE_RENDER) + " " + std::to_string(W) + "x" + std::to_string(H);
    tick(o, label, 0, total);
    const Engine& liif = engine("liif");
    const float cell_y = static_cast<float>(2.0 / H), cell_x = static_cast<float>(2.0 / W);
    int done = 0;
    for (const auto& bd : bs) {
        const int rows = bd.b - bd.a;
        std::vector<float> fw(static_cast<size_t>(N) * C * rows * w);
        for (int nc = 0; nc < N * C; ++nc)
            std::memcpy(&fw[static_cast<size_t>(nc) * rows * w], &f[(static_cast<size_t>(nc) * h + bd.a) * w],
                        static_cast<size_t>(rows) * w * sizeof(float));
        const bool whole_window = bd.a == 0 && bd.b == h;
        const float wcell_y = whole_window ? cell_y : static_cast<float>(static_cast<double>(cell_y) * (static_cast<double>(h) / rows));
        for (int64_t start = static_cast<int64_t>(bd.i0) * W; start < static_cast<int64_t>(bd.i1) * W; start += chunk) {
            const int64_t stop = std::min<int64_t>(start + chunk, static_cast<int64_t>(bd.i1) * W), n = stop - start;
            std::vector<float> coord(static_cast<size_t>(N * n * 2)), cell(static_cast<size_t>(N * n * 2));
            for (int64_t q = 0; q < n; ++q) {
                const int64_t i = (start + q) / W, j = (start + q) % W;
                float y = static_cast<float>(-1.0 + (2.0 * static_cast<double>(i) + 1.0) / H);
                const float x = static_cast<float>(-1.0 + (2.0 * static_cast<double>(j) + 1.0) / W);
                if (!whole_window)
                    y = static_cast<float>(((static_cast<double>(y) + 1.0) * (h / 2.0) - bd.a) * (2.0 / rows) - 1.0);
                for (int s = 0; s < N; ++s) {
                    float* cp = &coord[(static_cast<size_t>(s) * n + q) * 2];
                    float* ce = &cell[(static_cast<size_t>(s) * n + q) * 2];
                    cp[0] = y; cp[1] = x;
                    ce[0] = wcell_y; ce[1] = cell_x;
                }
            }
            auto r = liif.run({{"features", {N, C, rows, w}, fw.data()}, {"coord", {N, n, 2}, coord.data()},
                               {"cell", {N, n, 2}, cell.data()}},
                              {"rgb"});
            const std::vector<float>& rgb = r[0].data;
            for (size_t q = 0; q < rgb.size(); ++q)
                if (!std::isfinite(rgb[q])) {
                    const int64_t pix = start + static_cast<int64_t>((q / 3) % static_cast<size_t>(n));
                    throw Error(LDMIND_ERR_NUMERICAL,
                                contract::fill(contract::NOT_FINITE,
                                               {"liif", fmt(" (first at output pixel x=%lld, y=%lld)",
                                                            static_cast<long long>(pix % W),
                                                            static_cast<long long>(pix / W))}));
                }
            for (int s = 0; s < N; ++s) {
                uint8_t* dst = out + (static_cast<size_t>(s) * H * W + static_cast<size_t>(start)) * 3;
                const float* src = &rgb[static_cast<size_t>(s) * n * 3];
                for (size_t q = 0; q < static_cast<size_t>(n) * 3; ++q) {
                    float v = (src[q] + 1.0f) * 127.5f;
                    v = std::min(std::max(v, 0.0f), 255.0f);
                    dst[q] = static_cast<uint8_t>(std::floor(v + 0.5f));
                }
            }
            tick(o, label, ++done, total);
        }
    }
}

void Pipeline::upscale(const uint8_t* rgb, int h, int w, double scale, int W_out, int H_out, const Options& o,
                       uint8_t* out) const {
    need_conditional(true);
    int c, lh, lw;
    latent_shape(h, w, &c, &lh, &lw);
    if (o.backproject < 0 || o.backproject > contract::MAX_BACKPROJECT)
        input_error(contract::fill(contract::BACKPROJECT, {std::to_string(contract::MAX_BACKPROJECT),
                                                           std::to_string(o.backproject)}));
    int H, W;
    output_size(h, w, scale, W_out, H_out, &H, &W);
    const int n = count(o.num_samples);
    check_output(n, H, W, working_bytes(n, lh, lw));
    std::vector<float> z = cropped_latents(rgb, h, w, o);
    render(z, n, lh, lw, H, W, o, out);
    for (int k = 0; k < n; ++k) {
        backproject_inplace(out + static_cast<size_t>(k) * H * W * 3, H, W, rgb, h, w, o.backproject);
        if (o.backproject) tick(o, contract::STAGE_BACKPROJECT, k + 1, n);
    }
}

void Pipeline::generate(int W_out, int H_out, int lh, int lw, const Options& o, uint8_t* out) const {
    need_conditional(false);
    int H, W;
    output_size(1, 1, 0, W_out, H_out, &H, &W);
    const int n = count(o.num_samples);
    if (lh < 0 || lw < 0) {            // the zoom: the training latent, stretched to the size
        lh = b_.gen_h; lw = b_.gen_w;
    } else if (lh == 0 || lw == 0) {   // the output's own scale (latent_tiles.native_latent)
        lh = native_latent(H, b_.ae_downsample, b_.tile_align);
        lw = native_latent(W, b_.ae_downsample, b_.tile_align);
    }
    const int m = b_.tile_align;
    if (lh < 1 || lw < 1 || lh % m || lw % m)
        input_error(contract::fill(contract::LATENT_SIZE, {std::to_string(m), std::to_string(lh), std::to_string(lw)}));
    check_output(n, H, W, working_bytes(n, lh, lw));
    const std::vector<Step> sched = schedule(o, false);
    const TilePlan p = plan(lh, lw, o.steps, n, o.latent_tile, o.latent_overlap, false, b_.tile_align);
    std::vector<float> z = sample(nullptr, b_.z_channels, lh, lw, sched, o, p);
    render(z, n, lh, lw, H, W, o, out);
}

}  // namespace ldmind::core
