// Iterative back-projection onto the LR input (ldmind_ref/core/consistency.py): PIL's bicubic
// resampling as banded matrices, the iteration on LR-sized arrays, float64, rounded halves up.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core.hpp"

namespace ldmind::core {

namespace {

constexpr double A = -0.5, SUPPORT = 2.0;

double bicubic(double x) {
    x = std::fabs(x);
    if (x < 1.0) return ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * A;
    return 0.0;
}

// one axis, n_in -> n_out: out[i] = sum_k weights[i][k] * in[taps[i][k]]
struct Resampler {
    int n_in, n_out, k = 0;
    std::vector<int> taps;       // [n_out * k], clamped into the input
    std::vector<double> weights; // [n_out * k], 0 on out-of-range taps

    Resampler(int nin, int nout) : n_in(nin), n_out(nout) {
        const double scale = static_cast<double>(nin) / nout, filterscale = std::max(scale, 1.0);
        const double support = SUPPORT * filterscale;
        std::vector<int> lo(static_cast<size_t>(nout)), hi(static_cast<size_t>(nout));
        std::vector<double> centre(static_cast<size_t>(nout));
        for (int i = 0; i < nout; ++i) {
            double c = (static_cast<double>(i) + 0.5) * scale;
            centre[static_cast<size_t>(i)] = c;
            lo[static_cast<size_t>(i)] = static_cast<int>(std::clamp(std::trunc(c - support + 0.5), 0.0, static_cast<double>(nin)));
            hi[static_cast<size_t>(i)] = static_cast<int>(std::clamp(std::trunc(c + support + 0.5), 0.0, static_cast<double>(nin)));
            k = std::max(k, hi[static_cast<size_t>(i)] - lo[static_cast<size_t>(i)]);
        }
        taps.resize(static_cast<size_t>(nout) * k);
        weights.resize(static_cast<size_t>(nout) * k);
        for (int i = 0; i < nout; ++i) {
            double total = 0;
            double* w = &weights[static_cast<size_t>(i) * k];
            for (int j = 0; j < k; ++j) {
                int t = lo[static_cast<size_t>(i)] + j;
                w[j] = t < hi[static_cast<size_t>(i)] ? bicubic((t - centre[static_cast<size_t>(i)] + 0.5) / filterscale) : 0.0;
                total += w[j];
                taps[static_cast<size_t>(i) * k + j] = std::min(t, nin - 1);
            }
            for (int j = 0; j < k; ++j) w[j] = total != 0 ? w[j] / total : 0.0;
        }
    }
};

}  // namespace

void backproject_inplace(uint8_t* out, int H, int W, const uint8_t* lr, int h, int w, int iterations) {
    if (iterations == 0) return;
    Resampler down_y(H, h), down_x(W, w), up_y(h, H), up_x(w, W);
    const size_t lrn = static_cast<size_t>(h) * w * 3;
    // D out_0: columns first (each row to w), then rows (H -> h)
    std::vector<double> narrow(static_cast<size_t>(H) * w * 3, 0.0);
    for (int r = 0; r < H; ++r)
        for (int x = 0; x < w; ++x)
            for (int j = 0; j < down_x.k; ++j) {
                double wt = down_x.weights[static_cast<size_t>(x) * down_x.k + j];
                const uint8_t* px = out + (static_cast<size_t>(r) * W + down_x.taps[static_cast<size_t>(x) * down_x.k + j]) * 3;
                double* o = &narrow[(static_cast<size_t>(r) * w + x) * 3];
                for (int c = 0; c < 3; ++c) o[c] += wt * px[c];
            }
    std::vector<double> residual(lrn, 0.0);
    for (int y = 0; y < h; ++y)
        for (int j = 0; j < down_y.k; ++j) {
            double wt = down_y.weights[static_cast<size_t>(y) * down_y.k + j];
            if (wt == 0) continue;
            const double* src = &narrow[static_cast<size_t>(down_y.taps[static_cast<size_t>(y) * down_y.k + j]) * w * 3];
            double* dst = &residual[static_cast<size_t>(y) * w * 3];
            for (size_t q = 0; q < static_cast<size_t>(w) * 3; ++q) dst[q] += wt * src[q];
        }
    for (size_t q = 0; q < lrn; ++q) residual[q] = lr[q] - residual[q];
    // (D U) of each axis, n_lr x n_lr
    auto down_up = [](const Resampler& d, const Resampler& u) {
        const int n = d.n_out;
        std::vector<double> m(static_cast<size_t>(n) * n, 0.0);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < d.k; ++j) {
                double wd = d.weights[static_cast<size_t>(i) * d.k + j];
                if (wd == 0) continue;
                int big = d.taps[static_cast<size_t>(i) * d.k + j];
                for (int l = 0; l < u.k; ++l)
                    m[static_cast<size_t>(i) * n + u.taps[static_cast<size_t>(big) * u.k + l]] +=
                        wd * u.weights[static_cast<size_t>(big) * u.k + l];
            }
        return m;
    };
    const std::vector<double> a_y = down_up(down_y, up_y), a_x = down_up(down_x, up_x);
    // both are banded: the non-zero column range of each row
    auto band = [](const std::vector<double>& m, int n) {
        std::vector<std::pair<int, int>> r(static_cast<size_t>(n), {0, 0});
        for (int i = 0; i < n; ++i) {
            int lo = n, hi = 0;
            for (int j = 0; j < n; ++j)
                if (m[static_cast<size_t>(i) * n + j] != 0) { lo = std::min(lo, j); hi = j + 1; }
            r[static_cast<size_t>(i)] = {lo, std::max(lo, hi)};
        }
        return r;
    };
    const auto band_y = band(a_y, h), band_x = band(a_x, w);
    std::vector<double> c(lrn, 0.0), t(lrn), next(lrn);
    for (int it = 0; it < iterations; ++it) {
        // t[k, l] = sum_j a_x[l, j] c[k, j]; next = c + residual - sum_k a_y[i, k] t[k, l]
        std::fill(t.begin(), t.end(), 0.0);
        for (int k = 0; k < h; ++k)
            for (int l = 0; l < w; ++l)
                for (int j = band_x[static_cast<size_t>(l)].first; j < band_x[static_cast<size_t>(l)].second; ++j) {
                    double a = a_x[static_cast<size_t>(l) * w + j];
                    if (a == 0) continue;
                    for (int ch = 0; ch < 3; ++ch)
                        t[(static_cast<size_t>(k) * w + l) * 3 + ch] += a * c[(static_cast<size_t>(k) * w + j) * 3 + ch];
                }
        for (int i = 0; i < h; ++i) {
            double* o = &next[static_cast<size_t>(i) * w * 3];
            std::fill(o, o + static_cast<size_t>(w) * 3, 0.0);
            for (int k = band_y[static_cast<size_t>(i)].first; k < band_y[static_cast<size_t>(i)].second; ++k) {
                double a = a_y[static_cast<size_t>(i) * h + k];
                if (a == 0) continue;
                const double* src = &t[static_cast<size_t>(k) * w * 3];
                for (size_t q = 0; q < static_cast<size_t>(w) * 3; ++q) o[q] += a * src[q];
            }
        }
        for (size_t q = 0; q < lrn; ++q) c[q] = c[q] + residual[q] - next[q];
    }
    // out += U c, row by row: tall = U_y c (one output row), then U_x
    std::vector<double> tall(static_cast<size_t>(w) * 3);
    for (int r = 0; r < H; ++r) {
        std::fill(tall.begin(), tall.end(), 0.0);
        for (int j = 0; j < up_y.k; ++j) {
            double wt = up_y.weights[static_cast<size_t>(r) * up_y.k + j];
            if (wt == 0) continue;
            const double* src = &c[static_cast<size_t>(up_y.taps[static_cast<size_t>(r) * up_y.k + j]) * w * 3];
            for (size_t q = 0; q < tall.size(); ++q) tall[q] += wt * src[q];
        }
        for (int x = 0; x < W; ++x) {
            double corr[3] = {0, 0, 0};
            for (int j = 0; j < up_x.k; ++j) {
                double wt = up_x.weights[static_cast<size_t>(x) * up_x.k + j];
                const double* s = &tall[static_cast<size_t>(up_x.taps[static_cast<size_t>(x) * up_x.k + j]) * 3];
                for (int ch = 0; ch < 3; ++ch) corr[ch] += wt * s[ch];
            }
            uint8_t* px = out + (static_cast<size_t>(r) * W + x) * 3;
            for (int ch = 0; ch < 3; ++ch) {
                double v = static_cast<double>(px[ch]) + corr[ch];
                px[ch] = static_cast<uint8_t>(std::floor(std::clamp(v, 0.0, 255.0) + 0.5));
            }
        }
    }
}

}  // namespace ldmind::core
