// The ldmind CLI over the C API (include/ldmind.h): its failures as the CLI's, an open pipeline,
// output buffers and cancellable calls, shared by the commands (main.cpp, profile.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "ldmind.h"

namespace ldmind_cli {

// seconds on the steady clock (progress and profile timings)
double now_s();

// a library status other than LDMIND_OK as the CLI's failure: Stopped, Internal or Fail
[[noreturn]] void library_failure(ldmind_status s);

struct Pipe {
    ldmind_pipeline* p = nullptr;
    ~Pipe() { ldmind_close(p); }
};

void open_pipeline(Pipe& pipe, const std::string& engines, const std::string& backend, const std::string& precision,
                   int threads, bool verify);

// Output memory: address space reserved, pages committed as the library writes them, so that a
// request too large for the machine reaches the library's own check (runtime/limits.py's
// message) instead of failing here.
struct Buffer {
    uint8_t* ptr = nullptr;
    size_t size = 0;
    explicit Buffer(double bytes);   // std::bad_alloc when the address space is not there
    ~Buffer();
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    uint8_t* get() const { return ptr; }
};

// a library call that polls the progress callback: a signal cancels it (g_cancellable)
void run_call(const std::function<ldmind_status()>& call);

}  // namespace ldmind_cli
