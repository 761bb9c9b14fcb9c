// Refuse work that cannot fit in memory before allocating it (runtime/limits.py, same
// estimates, same messages; the budgets are the contract's).
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core.hpp"

namespace ldmind::core {

namespace {
constexpr double GiB = 1024.0 * 1024.0 * 1024.0;

std::string fmt_bytes(double n) {
    return n >= GiB / 10 ? fmt("%.1f GiB", n / GiB) : fmt("%.0f MiB", n / (1024.0 * 1024.0));
}
}  // namespace

int64_t available_memory() {
    if (const char* env = std::getenv("LDMIND_MEMORY_LIMIT"); env && *env) {
        char* end = nullptr;
        double v = std::strtod(env, &end);
        while (end && *end == ' ') ++end;
        if (end == env || (end && *end) || !std::isfinite(v) || v < 0)
            input_error(contract::fill(contract::MEMORY_LIMIT_ENV, {std::string("'") + env + "'"}));
        return static_cast<int64_t>(v);
    }
    std::ifstream f("/proc/meminfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("MemAvailable:", 0) == 0) {
            std::istringstream s(line.substr(13));
            int64_t kb = 0;
            s >> kb;
            return kb * 1024;
        }
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && size > 0 ? static_cast<int64_t>(pages) * size : (1LL << 62);
}

void check_output(int64_t num, int64_t H, int64_t W, int64_t extra) {
    // in double: N x H x W x 3 can pass int64 (Python's integers do not overflow)
    const double need = static_cast<double>(num) * static_cast<double>(H) * static_cast<double>(W) * 3.0 +
                        static_cast<double>(extra);
    const int64_t avail = available_memory();
    if (need + static_cast<double>(contract::HEADROOM) > static_cast<double>(avail)) {
        std::string count = num == 1 ? "a" : std::to_string(num) + " images of";
        input_error(contract::fill(contract::OUTPUT_MEMORY, {count, std::to_string(W), std::to_string(H), "output",
                                                             fmt_bytes(need), fmt_bytes(static_cast<double>(avail))}));
    }
}

int64_t graph_bytes(const std::map<std::string, GraphCost>& costs, int64_t batch, int h, int w) {
    double need = 0;
    for (const auto& kv : costs) need = std::max(need, graph_memory(kv.second, h, w));
    return static_cast<int64_t>(contract::MEMORY_MARGIN * static_cast<double>(batch) * need);
}

int64_t graph_budget() { return std::min<int64_t>(contract::GRAPH_MEMORY_BUDGET, available_memory() - contract::HEADROOM); }

void check_latent(const std::map<std::string, GraphCost>& costs, int64_t batch, int h, int w) {
    const int64_t need = graph_bytes(costs, batch, h, w), avail = available_memory();
    if (need + contract::HEADROOM > avail)
        input_error(contract::fill(contract::LATENT_MEMORY, {"this request", std::to_string(w), std::to_string(h),
                                                             fmt_bytes(static_cast<double>(need)),
                                                             fmt_bytes(static_cast<double>(avail))}));
}

}  // namespace ldmind::core
