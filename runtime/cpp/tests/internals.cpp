// Test driver of the library's internals (ldmind::core, linked from the library's objects, not
// through the C API).  Used by tests/cpp_openvino_cases.py and tests/test_cpp.py.
//
//   ldmind_internals static_limit BYTES...
//       "budget B", "max M" (OPENVINO_STATIC_WEIGHT_BUDGET, OPENVINO_STATIC_MAX), then
//       "limit BYTES N" per argument (openvino_static_limit)
//   ldmind_internals calls DIR BACKEND MAX_STATIC BxHxW...
//       one openvino/openvino-bf16 engine on DIR's unet_step graph keeping at most MAX_STATIC
//       fixed-shape copies (0: the graph's own limit), called once per BxHxW latent, in order,
//       on a feed drawn from the RNG contract (z_t: gaussian(1, 0), cond: gaussian(1, 1),
//       noise: gaussian(1, 2), timestep 500, alpha_bar_t 0.5, alpha_bar_prev 0.625, sigma_t 0.125);
//       per call "call BxHxW SHA256" (z_prev's float32 bytes then pred_z0's) and "held KEY | KEY"
//       (openvino_static_shapes, least recently used first)
//   ldmind_internals errors PATH LIBRARY GRAPH BACKEND MESSAGE
//       "load CODE TEXT" (load_error(PATH, LIBRARY, MESSAGE)), then "run CODE TEXT"
//       (run_error(GRAPH, BACKEND, MESSAGE)): the library's error for each
// Exit 0 on success; 1 and the message on stderr on failure.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core.hpp"

using namespace ldmind::core;

namespace {

int static_limits(int argc, char** argv) {
    std::printf("budget %lld\nmax %d\n", static_cast<long long>(OPENVINO_STATIC_WEIGHT_BUDGET), OPENVINO_STATIC_MAX);
    for (int i = 2; i < argc; ++i) {
        const long long bytes = std::atoll(argv[i]);
        std::printf("limit %lld %d\n", bytes, openvino_static_limit(bytes));
    }
    return 0;
}

int calls(int argc, char** argv) {
    if (argc < 5) {
        std::fprintf(stderr, "usage: ldmind_internals calls DIR BACKEND MAX_STATIC BxHxW...\n");
        return 2;
    }
    const Bundle b = load_bundle(argv[2], false);
    const auto engine = openvino_engine(b, "unet_step", argv[3], 0, std::atoi(argv[4]));
    const float ab_t = 0.5f, ab_prev = 0.625f, sigma = 0.125f;
    for (int i = 5; i < argc; ++i) {
        int n = 0, h = 0, w = 0;
        if (std::sscanf(argv[i], "%dx%dx%d", &n, &h, &w) != 3) {
            std::fprintf(stderr, "not BxHxW: %s\n", argv[i]);
            return 2;
        }
        const std::vector<int64_t> shape{n, b.z_channels, h, w};
        const size_t count = static_cast<size_t>(n) * b.z_channels * h * w;
        std::vector<float> z(count), cond(count), noise(count);
        gaussian(1, 0, count, z.data());
        gaussian(1, 1, count, cond.data());
        gaussian(1, 2, count, noise.data());
        const std::vector<int64_t> ts(static_cast<size_t>(n), 500);
        std::vector<Input> in{{"z_t", shape, z.data()}};
        if (b.conditional) in.push_back({"cond", shape, cond.data()});
        in.push_back({"timestep", {n}, nullptr, ts.data()});
        in.push_back({"alpha_bar_t", {1}, &ab_t});
        in.push_back({"alpha_bar_prev", {1}, &ab_prev});
        in.push_back({"sigma_t", {1}, &sigma});
        in.push_back({"noise", shape, noise.data()});
        const auto r = engine->run(in, {"z_prev", "pred_z0"});
        std::string bytes;
        for (const Tensor& t : r)
            bytes.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
        std::printf("call %s %s\n", argv[i], sha256_text(bytes).c_str());
        std::string held;
        for (const std::string& key : openvino_static_shapes(*engine)) held += (held.empty() ? "" : " | ") + key;
        std::printf("held %s\n", held.c_str());
    }
    return 0;
}

int errors(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: ldmind_internals errors PATH LIBRARY GRAPH BACKEND MESSAGE\n");
        return 2;
    }
    try {
        load_error(argv[2], argv[3], argv[6]);
    } catch (const Error& e) {
        std::printf("load %d %s\n", e.code, e.what());
    }
    try {
        run_error(argv[4], argv[5], argv[6]);
    } catch (const Error& e) {
        std::printf("run %d %s\n", e.code, e.what());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "static_limit") return static_limits(argc, argv);
        if (mode == "calls") return calls(argc, argv);
        if (mode == "errors") return errors(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: ldmind_internals static_limit BYTES... | calls DIR BACKEND MAX_STATIC BxHxW... | "
                         "errors PATH LIBRARY GRAPH BACKEND MESSAGE\n");
    return 2;
}
