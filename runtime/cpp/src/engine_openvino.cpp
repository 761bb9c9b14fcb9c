// Graphs on OpenVINO for the CPU (runtime/backends/openvino.py's OpenVINOEngine): backends
// `openvino` (fp32) and `openvino-bf16`.  The same compile settings as the Python engine, so
// that the same kernels run on the same inputs: the ONNX graph read as exported (its dynamic
// axes stay dynamic: no reshape, no model cache), compiled for "CPU" with
// INFERENCE_PRECISION_HINT f32 or bf16 (never OpenVINO's own default, which is bf16 on CPUs with
// AVX-512 BF16 or AMX), PERFORMANCE_HINT LATENCY, and INFERENCE_NUM_THREADS only when threads
// are asked for.  The LIIF query tile is the manifest's query_chunk (the Python engine has no
// query_tile of its own).
//
// Compiled only where CMake finds OpenVINO (LDMIND_WITH_OPENVINO; build.sh finds the Python
// wheel's); without it openvino_unavailable() says so and `auto` never offers it.
//
// Thread safety: one compiled model per graph; each call takes an idle infer request from a
// pool (creating one when all are busy) and returns it afterwards, so concurrent calls never
// share a request (as the Python engine).  Inputs are wrapped without a copy (share_inputs);
// outputs are copied out before the request goes back to the pool.
#include "core.hpp"

#ifdef LDMIND_WITH_OPENVINO
#include <openvino/openvino.hpp>

#include <mutex>

namespace ldmind::core {

namespace {

// backend name -> OpenVINO's inference precision (runtime/backends/openvino.py PRECISION)
ov::element::Type precision_of(const std::string& backend) {
    return backend == "openvino-bf16" ? ov::element::bf16 : ov::element::f32;
}

ov::Core& core() {
    static ov::Core c;   // function-local static: created once, thread-safe
    return c;
}

class OvEngine final : public Engine {
  public:
    OvEngine(const std::string& path, const std::string& graph, const std::string& backend, int threads)
        : graph_(graph), backend_(backend) {
        ov::AnyMap config{ov::hint::inference_precision(precision_of(backend)),
                          ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY)};
        if (threads > 0) config.emplace(ov::inference_num_threads(threads));
        try {
            compiled_ = core().compile_model(core().read_model(path), "CPU", config);
        } catch (const std::exception& e) {
            const std::string msg = first_line(e.what(), "ov::Exception");
            if (out_of_memory(msg))
                throw Error(LDMIND_ERR_MEMORY, "the machine ran out of memory while loading " + base_name(path) +
                                                   "; free memory and retry");
            engine_error(path + ": openvino cannot load this graph (" + msg + ")");
        }
    }

    std::vector<Tensor> run(const std::vector<Input>& in, const std::vector<const char*>& outputs) const override {
        std::unique_ptr<ov::InferRequest> request;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!idle_.empty()) {
                request = std::move(idle_.back());
                idle_.pop_back();
            }
        }
        std::vector<Tensor> result;
        try {
            if (!request) request = std::make_unique<ov::InferRequest>(compiled_.create_infer_request());
            for (const auto& t : in) {
                const ov::Shape shape(t.shape.begin(), t.shape.end());
                void* data = t.f ? static_cast<void*>(const_cast<float*>(t.f)) : static_cast<void*>(const_cast<int64_t*>(t.i));
                request->set_tensor(t.name, ov::Tensor(t.f ? ov::element::f32 : ov::element::i64, shape, data));
            }
            request->infer();
            for (const char* name : outputs) {
                const ov::Tensor o = request->get_tensor(name);
                Tensor r;
                const ov::Shape s = o.get_shape();
                r.shape.assign(s.begin(), s.end());
                const float* p = o.data<const float>();
                r.data.assign(p, p + r.numel());
                result.push_back(std::move(r));
            }
        } catch (const Error&) {
            throw;
        } catch (const std::exception& e) {
            const std::string msg = first_line(e.what(), "ov::Exception");
            if (out_of_memory(msg))
                throw Error(LDMIND_ERR_MEMORY, "the machine ran out of memory while running the " + graph_ + " graph (" +
                                                   backend_ + "); ask for a smaller output, fewer samples or a smaller "
                                                   "input, or free memory");
            engine_error(graph_ + " (" + backend_ + "): " + msg);
        }
        std::lock_guard<std::mutex> lock(mutex_);
        idle_.push_back(std::move(request));
        return result;
    }

  private:
    std::string graph_, backend_;
    mutable ov::CompiledModel compiled_;   // create_infer_request is not const; it is thread-safe
    mutable std::mutex mutex_;
    mutable std::vector<std::unique_ptr<ov::InferRequest>> idle_;
};

}  // namespace

std::string openvino_unavailable() { return ""; }

std::string openvino_version() {
    // "2026.4.1-22982-e213a147257-releases/2026/4": the release, as the Python wheel's version
    const std::string build = ov::get_openvino_version().buildNumber;
    return build.substr(0, build.find('-'));
}

std::unique_ptr<Engine> openvino_engine(const Bundle& b, const std::string& graph, const std::string& backend,
                                        int threads) {
    try {
        core();
    } catch (const std::exception& e) {
        engine_error("openvino cannot start (" + first_line(e.what(), "ov::Exception") + ")");
    }
    return std::make_unique<OvEngine>(b.graph_path(graph), graph, backend, threads);
}

}  // namespace ldmind::core

#else  // built without OpenVINO

namespace ldmind::core {

std::string openvino_unavailable() {
    return "this build of the library has no OpenVINO (it was not found when the library was compiled; "
           "build with the openvino wheel installed for $PYTHON, or -DOpenVINO_DIR=...)";
}

std::string openvino_version() { return "none"; }

std::unique_ptr<Engine> openvino_engine(const Bundle&, const std::string& graph, const std::string& backend, int) {
    engine_error(graph + " (" + backend + "): " + openvino_unavailable());
}

}  // namespace ldmind::core

#endif
