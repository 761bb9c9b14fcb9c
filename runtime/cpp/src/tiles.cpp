// The latent tile plan (ldmind_ref/core/latent_tiles.py), float64 in numpy's order of operations.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core.hpp"

namespace ldmind::core {

namespace {

int round_up(int v, int m) { return -((-v) / m) * m; }   // v >= 0
int floordiv(int a, int b) { int q = a / b; return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q; }

std::vector<int> axis_starts(int length, int tile, int overlap, int align) {
    if (std::min({length, tile, align}) < 1 || overlap < 0)
        throw std::invalid_argument(fmt("bad tile geometry: length=%d tile=%d overlap=%d align=%d", length, tile,
                                        overlap, align));
    if (length <= tile) return {0};
    if (tile % align || length % align)
        throw std::invalid_argument(fmt("tile %d and length %d must be multiples of %d", tile, length, align));
    if (overlap >= tile)
        throw std::invalid_argument(fmt("overlap %d must be smaller than the tile %d", overlap, tile));
    const int span = length - tile;
    int n = -floordiv(-span, tile - overlap) + 1;
    while (true) {
        std::vector<int> s(static_cast<size_t>(n));
        for (int k = 0; k < n; ++k)
            s[static_cast<size_t>(k)] = static_cast<int>((static_cast<int64_t>(k) * span) / (n - 1)) / align * align;
        s.back() = span;
        bool ok = true;
        for (size_t k = 1; k < s.size(); ++k) ok = ok && s[k] - s[k - 1] <= tile - overlap;
        if (ok) return s;
        ++n;
    }
}

std::vector<double> ramp(int n) {
    std::vector<double> r(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        double s = std::sin(0.5 * M_PI * (static_cast<double>(i) + 0.5) / n);
        r[static_cast<size_t>(i)] = s * s;
    }
    return r;
}

std::vector<std::vector<double>> axis_weights(int length, const std::vector<int>& starts, int tile) {
    const int size = std::min(tile, length);
    std::vector<std::vector<double>> raw;
    for (size_t k = 0; k < starts.size(); ++k) {
        std::vector<double> w(static_cast<size_t>(size), 1.0);
        const int s = starts[k];
        if (k > 0) {
            int o = starts[k - 1] + size - s;
            auto r = ramp(o);
            for (int i = 0; i < o; ++i) w[static_cast<size_t>(i)] = r[static_cast<size_t>(i)];
        }
        if (k + 1 < starts.size()) {
            int o = s + size - starts[k + 1];
            auto r = ramp(o);
            for (int i = 0; i < o; ++i) {
                double& v = w[static_cast<size_t>(size - o + i)];
                v = std::min(v, r[static_cast<size_t>(o - 1 - i)]);
            }
        }
        raw.push_back(std::move(w));
    }
    std::vector<double> total(static_cast<size_t>(length), 0.0);
    for (size_t k = 0; k < starts.size(); ++k)
        for (int i = 0; i < size; ++i) total[static_cast<size_t>(starts[k] + i)] += raw[k][static_cast<size_t>(i)];
    for (size_t k = 0; k < starts.size(); ++k)
        for (int i = 0; i < size; ++i) raw[k][static_cast<size_t>(i)] /= total[static_cast<size_t>(starts[k] + i)];
    return raw;
}

int default_overlap(int tile, int align) {
    return std::min(round_up(static_cast<int>(std::ceil(contract::MIN_OVERLAP_FRACTION * tile)), align), tile / 2 / align * align);
}

double graph_cost(const GraphCost& c, int h, int w) {
    double macs = c.macs_per_cell * h * w;
    for (const auto& a : c.attention) {
        double t = (h / a.stride) * (w / a.stride);
        macs += 2.0 * t * t * a.channels;
    }
    return macs;
}

double sampling_cost(const std::map<std::string, GraphCost>& costs, const TilePlan& p, int steps) {
    double per_tile = 0;
    for (const auto& [name, c] : costs) per_tile += graph_cost(c, p.th, p.tw) * (name == "unet_step" ? steps : 1);
    return static_cast<double>(p.size()) * per_tile;
}

}  // namespace

double graph_memory(const GraphCost& c, int h, int w) {
    double cells = static_cast<double>(h) * w, best = 0;
    bool any = false;
    for (const auto& [a, b] : c.memory) {
        double v = a * cells + b * cells * cells;
        best = any ? std::max(best, v) : v;
        any = true;
    }
    return best;
}

TilePlan TilePlan::scaled(int r) const {
    TilePlan q;
    q.h = h / r; q.w = w / r; q.th = th / r; q.tw = tw / r; q.tile = tile / r; q.overlap = overlap / r;
    for (int s : ys) q.ys.push_back(s / r);
    for (int s : xs) q.xs.push_back(s / r);
    return q;
}

TilePlan make_plan(int h, int w, int tile, int overlap, int align) {
    TilePlan p;
    p.ys = axis_starts(h, tile, overlap, align);
    p.xs = axis_starts(w, tile, overlap, align);
    p.h = h; p.w = w; p.th = std::min(tile, h); p.tw = std::min(tile, w); p.tile = tile; p.overlap = overlap;
    p.wy = axis_weights(h, p.ys, tile);
    p.wx = axis_weights(w, p.xs, tile);
    return p;
}

TilePlan whole(int h, int w) {
    TilePlan p;
    p.h = h; p.w = w; p.th = h; p.tw = w; p.ys = {0}; p.xs = {0};
    p.wy = {std::vector<double>(static_cast<size_t>(h), 1.0)};
    p.wx = {std::vector<double>(static_cast<size_t>(w), 1.0)};
    return p;
}

TilePlan choose(int h, int w, int align, int train_latent, const std::map<std::string, GraphCost>& costs,
                int steps, int tile, int overlap, const Fits& fits) {
    const int default_tile = round_up(contract::DEFAULT_TILE_FACTOR * train_latent, align);
    if (tile >= 0 || overlap >= 0) {
        int t = tile < 0 ? default_tile : tile;
        int o = overlap < 0 ? default_overlap(t, align) : overlap;
        if (t < align || t % align)
            throw std::invalid_argument(contract::fill(contract::LATENT_TILE, {std::to_string(align), std::to_string(t)}));
        if (o < 0 || o % align || o > t / 2)
            throw std::invalid_argument(contract::fill(contract::LATENT_OVERLAP, {std::to_string(align),
                                                                                  std::to_string(t / 2), std::to_string(o)}));
        return make_plan(h, w, t, o, align);
    }
    int t = default_tile;
    const int smallest = round_up(train_latent, align);
    while (t > smallest && !fits(std::min(t, h), std::min(t, w))) t -= align;
    TilePlan tiled = make_plan(h, w, t, default_overlap(t, align), align);
    if (!tiled.tiled()) return tiled;
    TilePlan one = whole(h, w);
    if (fits(h, w) && sampling_cost(costs, one, steps) <= sampling_cost(costs, tiled, steps)) return one;
    return tiled;
}

// latent_tiles.native_latent
int native_latent(int side, int downsample, int align) {
    return std::max(align, side / downsample / align * align);
}

int render_band(const TilePlan& p) { return p.tiled() ? p.th : p.h; }

std::vector<Band> bands(int H, int h, int rows) {
    auto band_rows = [&](int a, int b, int* i0, int* i1) {
        // ceil((2aH - h) / 2h) in integers, as Python's -((h - 2aH) // 2h)
        auto ceil_div = [](int64_t num, int64_t den) {
            int64_t q = num / den;
            if (num % den != 0 && num > 0) ++q;
            return q;
        };
        int64_t a0 = ceil_div(2LL * a * H - h, 2LL * h), b0 = ceil_div(2LL * b * H - h, 2LL * h);
        *i0 = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(H, a0)));
        *i1 = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(H, b0)));
    };
    std::vector<Band> out;
    for (int a = 0; a < h; a += rows) {
        int b = std::min(h, a + rows), i0, i1;
        band_rows(a, b, &i0, &i1);
        if (i1 > i0) out.push_back({std::max(0, a - 1), std::min(h, b + 1), i0, i1});
    }
    return out;
}

}  // namespace ldmind::core
