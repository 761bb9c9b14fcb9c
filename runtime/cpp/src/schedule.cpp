// Sampler schedules (ldmind_ref/core/diffusion.py: ddim_timesteps, ddim_schedule,
// dpm_solver_schedule, sampling_schedule), float64 in numpy's order of operations.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core.hpp"

namespace ldmind::core {

namespace {

std::string steps_message(int T, int steps) {
    return contract::fill(contract::SCHEDULE_STEPS, {std::to_string(T), std::to_string(steps)});
}

bool known(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

std::string choices(const std::vector<std::string>& names) {
    std::string s;
    for (size_t k = 0; k < names.size(); ++k) s += (k ? ", " : "") + names[k];
    return s;
}

std::vector<int> ddim_timesteps(int T, int steps) {
    if (steps < 1 || steps > T) throw std::invalid_argument(steps_message(T, steps));
    std::vector<int> ts(static_cast<size_t>(steps));
    for (int k = 0; k < steps; ++k) ts[static_cast<size_t>(k)] = std::min(k * (T / steps) + 1, T - steps + k);
    return ts;
}

double log_snr(double ab) { return 0.5 * (std::log(ab) - std::log1p(-ab)); }

}  // namespace

// diffusion.fidelity_window
std::pair<int, int> fidelity_window(int n, double fidelity, bool conditional) {
    int skip = conditional ? std::min(n - 1, static_cast<int>(std::floor(fidelity * n / 2 + 0.5))) : 0;
    int stop = std::min(n - 1 - skip, static_cast<int>(std::floor(fidelity * n / 4 + 0.5)));
    return {skip, stop};
}

std::vector<Step> sampling_schedule(const std::vector<double>& ab, int steps, double eta,
                                    const std::string& schedule, const std::string& sampler,
                                    double fidelity, bool conditional) {
    if (!known(contract::SAMPLERS, sampler))
        throw std::invalid_argument(contract::fill(contract::ONE_OF, {"sampler", choices(contract::SAMPLERS),
                                                                      "'" + sampler + "'"}));
    const int T = static_cast<int>(ab.size());
    std::vector<Step> out;
    if (sampler == "dpm++2m") {
        if (steps < 1 || steps > T) throw std::invalid_argument(steps_message(T, steps));
        std::vector<int> ts = ddim_timesteps(T, steps);
        std::vector<int> desc(ts.rbegin(), ts.rend());
        std::vector<double> h(static_cast<size_t>(steps));
        for (int i = 0; i < steps; ++i) {
            int land = i + 1 < steps ? desc[static_cast<size_t>(i) + 1] : 0;
            h[static_cast<size_t>(i)] = log_snr(ab[static_cast<size_t>(land)]) - log_snr(ab[static_cast<size_t>(desc[static_cast<size_t>(i)])]);
        }
        const auto [skip, stop] = fidelity_window(steps, fidelity, conditional);
        for (int i = skip; i < steps - stop; ++i) {
            size_t u = static_cast<size_t>(i);
            int land = i + 1 < steps ? desc[u + 1] : 0;
            double ab_t = ab[static_cast<size_t>(desc[u])], ab_s = ab[static_cast<size_t>(land)];
            Step s;
            s.solver = true;
            s.t = desc[u];
            s.alpha_bar_t = ab_t;
            s.from_cond = skip > 0 && i == skip;
            if (stop > 0 && i == steps - stop - 1) {     // the exit: z_next = D_i
                s.c_x = 0.0; s.c_d = 1.0; s.c_d_prev = 0.0;
                out.push_back(s);
                break;
            }
            s.c_x = std::sqrt((1 - ab_s) / (1 - ab_t));
            double a = std::sqrt(ab_s) * -std::expm1(-h[u]);
            bool first = i == skip || (i == steps - 1 && steps < contract::LOWER_ORDER_FINAL_BELOW);
            if (h[u] == 0) {
                s.c_d = 0.0; s.c_d_prev = 0.0;
            } else if (first || h[u - 1] == 0) {
                s.c_d = a; s.c_d_prev = 0.0;
            } else {
                double r = h[u - 1] / h[u];
                s.c_d = a * (1 + 1 / (2 * r));
                s.c_d_prev = -a / (2 * r);
            }
            out.push_back(s);
        }
        return out;
    }
    if (!std::isfinite(eta) || eta < 0) throw std::invalid_argument(contract::fill(contract::ETA, {py_float(eta)}));
    std::vector<int> ts = ddim_timesteps(T, steps);
    const size_t N = ts.size();
    std::vector<double> a(N), p(N), sigma(N);
    for (size_t k = 0; k < N; ++k) {
        a[k] = ab[static_cast<size_t>(ts[k])];
        p[k] = k == 0 ? ab[0] : ab[static_cast<size_t>(ts[k - 1])];
        sigma[k] = eta * std::sqrt((1 - p[k]) / (1 - a[k]) * (1 - a[k] / p[k]));
    }
    if (!known(contract::DDIM_SCHEDULES, schedule))
        throw std::invalid_argument(contract::fill(contract::ONE_OF, {"schedule", choices(contract::DDIM_SCHEDULES),
                                                                      "'" + schedule + "'"}));
    if (schedule == "paper" && steps < 2)
        throw std::invalid_argument(contract::fill(contract::PAPER_STEPS, {std::to_string(T), std::to_string(steps)}));
    const size_t n = schedule == "paper" ? N - 1 : N;
    bool bad = false;
    double worst = 0;
    for (size_t k = 0; k < n; ++k) {
        if (1 - p[k] - sigma[k] * sigma[k] < -1e-12) bad = true;
        worst = std::max(worst, (1 - a[k] / p[k]) / (1 - a[k]));
    }
    if (bad)
        throw std::invalid_argument(contract::fill(contract::ETA_TOO_LARGE, {fmt("%g", eta), std::to_string(steps),
                                                                             fmt("%.4g", std::sqrt(1 / worst))}));
    for (size_t k = n; k-- > 0;) {
        Step s;
        s.t = ts[k];
        s.alpha_bar_t = a[k];
        s.alpha_bar_prev = p[k];
        s.sigma_t = sigma[k];
        out.push_back(s);
    }
    const auto [skip, stop] = fidelity_window(static_cast<int>(n), fidelity, conditional);
    out = std::vector<Step>(out.begin() + skip, out.end() - stop);
    if (stop > 0) {        // the exit: alpha_bar_prev 1, no noise: z_prev = pred_z0
        out.back().alpha_bar_prev = 1.0;
        out.back().sigma_t = 0.0;
    }
    if (skip > 0) out.front().from_cond = true;
    return out;
}

// -- the RNG contract (ldmind_ref/core/noise.py) ----------------------------------------------
namespace {
constexpr uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;
inline uint64_t splitmix64(uint64_t x) {
    x += GOLDEN;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}
}  // namespace

void gaussian(int64_t seed, int64_t stream, size_t n, float* out) {
    const uint64_t key = splitmix64(static_cast<uint64_t>(seed) * GOLDEN + static_cast<uint64_t>(stream));
    for (size_t i = 0; i < n; ++i) {
        uint64_t idx = static_cast<uint64_t>(i) * 2u + key;
        uint64_t a = splitmix64(idx), b = splitmix64(idx + 1u);
        double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1p-53;
        double u2 = static_cast<double>(b >> 11) * 0x1p-53;
        out[i] = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
    }
}

// diffusion.initial_latent: z in place (the draw of stream 0) becomes sqrt(ab) cond + sqrt(1 - ab) z
// in float64, rounded once; cond [c, h, w] is the same for each of the n samples
void initial_latent(float* z, size_t n, const float* cond, size_t one, double alpha_bar) {
    const double a = std::sqrt(alpha_bar), b = std::sqrt(1.0 - alpha_bar);
    for (size_t j = 0; j < n; ++j)
        for (size_t q = 0; q < one; ++q)
            z[j * one + q] = static_cast<float>(a * static_cast<double>(cond[q]) + b * static_cast<double>(z[j * one + q]));
}

}  // namespace ldmind::core
