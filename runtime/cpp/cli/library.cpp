// The ldmind CLI over the C API (library.hpp).
#include "library.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <new>

#include "errors.hpp"
#include "output.hpp"

namespace ldmind_cli {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void library_failure(ldmind_status s) {
    std::string m = ldmind_last_error();
    if (s == LDMIND_ERR_CANCELLED) throw Stopped{g_signal ? static_cast<int>(g_signal) : SIGINT};
    if (s == LDMIND_ERR_INTERNAL) {
        const std::string pre = "internal error: ";
        if (m.compare(0, pre.size(), pre) == 0) m = m.substr(pre.size());
        throw Internal{m};
    }
    throw Fail{m};
}

void open_pipeline(Pipe& pipe, const std::string& engines, const std::string& backend, const std::string& precision,
                   int threads, bool verify) {
    ldmind_status s = ldmind_open_ex(engines.c_str(), backend.c_str(), precision.c_str(), threads, verify ? 1 : 0, &pipe.p);
    check_signal();
    if (s != LDMIND_OK) library_failure(s);
}

Buffer::Buffer(double bytes) {
    if (!(bytes < 9e18)) throw std::bad_alloc();
    size = static_cast<size_t>(std::max(1.0, bytes));
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ptr = static_cast<uint8_t*>(p);
}
Buffer::~Buffer() { munmap(ptr, size); }

void run_call(const std::function<ldmind_status()>& call) {
    g_cancellable = 1;
    ldmind_status s = call();
    g_cancellable = 0;
    check_signal();
    if (s != LDMIND_OK) library_failure(s);
}

}  // namespace ldmind_cli
