// How a C++ service embeds ldmind: load the pipeline once, serve requests from several
// threads, each with its own seed.  Reads one raw RGB image, upscales it on THREADS threads
// at once (request k uses seed + k) and writes request k's image to OUT_PREFIX_k.raw.
//
//   ldmind_service_example ENGINES IN.raw WIDTH HEIGHT SCALE SEED THREADS OUT_PREFIX
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "ldmind.hpp"

int main(int argc, char** argv) {
    if (argc != 9) {
        std::fprintf(stderr, "usage: %s ENGINES IN.raw WIDTH HEIGHT SCALE SEED THREADS OUT_PREFIX\n", argv[0]);
        return 2;
    }
    try {
        const ldmind::Pipeline pipe(argv[1], "cpu");
        std::ifstream f(argv[2], std::ios::binary);
        const std::vector<uint8_t> rgb((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const int w = std::atoi(argv[3]), h = std::atoi(argv[4]), threads = std::atoi(argv[7]);
        const double scale = std::atof(argv[5]);
        std::vector<std::vector<ldmind::Image>> results(static_cast<size_t>(threads));
        std::vector<std::string> errors(static_cast<size_t>(threads));
        std::vector<std::thread> pool;
        for (int k = 0; k < threads; ++k)
            pool.emplace_back([&, k] {
                ldmind::Options o;
                o.steps = 3;
                o.seed = std::atoll(argv[6]) + k;
                try {
                    results[static_cast<size_t>(k)] = pipe.upscale(rgb.data(), w, h, scale, o);
                } catch (const ldmind::Error& e) {
                    errors[static_cast<size_t>(k)] = e.what();
                }
            });
        for (auto& t : pool) t.join();
        for (int k = 0; k < threads; ++k) {
            if (!errors[static_cast<size_t>(k)].empty()) {
                std::fprintf(stderr, "request %d: %s\n", k, errors[static_cast<size_t>(k)].c_str());
                return 2;
            }
            const auto& img = results[static_cast<size_t>(k)][0];
            std::ofstream out(std::string(argv[8]) + "_" + std::to_string(k) + ".raw", std::ios::binary);
            out.write(reinterpret_cast<const char*>(img.rgb.data()), static_cast<std::streamsize>(img.rgb.size()));
        }
        std::printf("%d requests served by %s on %s\n", threads, pipe.model_name().c_str(), pipe.backend().c_str());
    } catch (const ldmind::Error& e) {
        std::fprintf(stderr, "ldmind: error: %s\n", e.what());
        return 2;
    }
    return 0;
}
