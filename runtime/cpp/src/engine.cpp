// Graphs on ONNX Runtime (runtime/backends/onnxruntime.py's OrtEngine): the same session options as the
// Python runtime (default graph optimisations, no CPU arena, fatal-only logging), so the same
// kernels run on the same inputs.  Session::Run is thread-safe: one session serves every
// concurrent call.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cctype>

#include "core.hpp"

namespace ldmind::core {

size_t Tensor::numel() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
}

bool out_of_memory(std::string m) {
    std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return m.find("bad_alloc") != std::string::npos || m.find("failed to allocate") != std::string::npos ||
           m.find("out of memory") != std::string::npos || m.find("cannot allocate memory") != std::string::npos;
}

std::string first_line(const std::string& s, const std::string& empty) {
    size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return empty;
    size_t b = s.find('\n', a);
    std::string line = s.substr(a, b == std::string::npos ? std::string::npos : b - a);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    return line;
}

std::string base_name(const std::string& p) { return p.substr(p.rfind('/') + 1); }

std::vector<std::string> graphs_of(const Bundle& b) {
    std::vector<std::string> g;
    if (b.conditional) g.push_back("encoder");
    for (const char* n : {"unet_step", "decoder", "liif"}) g.push_back(n);
    return g;
}

std::string ort_version() { return OrtGetApiBase()->GetVersionString(); }

namespace {

Ort::Env& env() {
    static Ort::Env e(ORT_LOGGING_LEVEL_FATAL, "ldmind");   // function-local static: created once, thread-safe
    return e;
}

// LIIF queries per call on the CPU: runtime/backends/onnxruntime.py's CPU_QUERY_TILE (the MLP's activations
// stay in cache; docs/BENCHMARKS.md "LIIF stage").  Only the speed depends on it: each query's
// RGB is computed alone, so any chunking gives the same image.
constexpr int CPU_QUERY_TILE = 4096;

class OrtEngine final : public Engine {
  public:
    int query_tile() const override { return backend_ == "cpu" ? CPU_QUERY_TILE : 0; }

    OrtEngine(const std::string& path, const std::string& graph, const std::string& backend, int threads)
        : graph_(graph), backend_(backend) {
        Ort::SessionOptions so;
        so.SetLogSeverityLevel(ORT_LOGGING_LEVEL_FATAL);
        if (threads > 0) so.SetIntraOpNumThreads(threads);
        if (backend == "cuda") {
            OrtCUDAProviderOptions cuda{};       // not executed here: no GPU on the build machines
            so.AppendExecutionProvider_CUDA(cuda);
        } else {
            so.DisableCpuMemArena();             // as the Python runtime: no activations kept per session
        }
        try {
            session_ = std::make_unique<Ort::Session>(env(), path.c_str(), so);
        } catch (const Ort::Exception& e) {
            std::string msg = first_line(e.what(), "OrtException");
            if (out_of_memory(msg))
                throw Error(LDMIND_ERR_MEMORY, "the machine ran out of memory while loading " + base_name(path) +
                                                   "; free memory and retry");
            engine_error(path + ": onnxruntime cannot load this graph (" + msg + ")");
        }
    }

    std::vector<Tensor> run(const std::vector<Input>& in, const std::vector<const char*>& outputs) const override {
        Ort::MemoryInfo mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
        std::vector<Ort::Value> values;
        std::vector<const char*> names;
        for (const auto& t : in) {
            size_t n = 1;
            for (int64_t d : t.shape) n *= static_cast<size_t>(d);
            if (t.f)
                values.push_back(Ort::Value::CreateTensor<float>(mem, const_cast<float*>(t.f), n, t.shape.data(), t.shape.size()));
            else
                values.push_back(Ort::Value::CreateTensor<int64_t>(mem, const_cast<int64_t*>(t.i), n, t.shape.data(), t.shape.size()));
            names.push_back(t.name);
        }
        std::vector<Ort::Value> outs;
        try {
            outs = session_->Run(Ort::RunOptions{nullptr}, names.data(), values.data(), values.size(), outputs.data(),
                                 outputs.size());
        } catch (const Ort::Exception& e) {
            std::string msg = first_line(e.what(), "OrtException");
            if (out_of_memory(msg))
                throw Error(LDMIND_ERR_MEMORY, "the machine ran out of memory while running the " + graph_ + " graph (" +
                                                   backend_ + "); ask for a smaller output, fewer samples or a smaller "
                                                   "input, or free memory");
            engine_error(graph_ + " (" + backend_ + "): " + msg);
        }
        std::vector<Tensor> result;
        for (auto& v : outs) {
            Tensor t;
            t.shape = v.GetTensorTypeAndShapeInfo().GetShape();
            const float* p = v.GetTensorData<float>();
            t.data.assign(p, p + t.numel());
            result.push_back(std::move(t));
        }
        return result;
    }

  private:
    std::string graph_, backend_;
    std::unique_ptr<Ort::Session> session_;
};

bool has_cuda() {
    for (const auto& p : Ort::GetAvailableProviders())
        if (p == "CUDAExecutionProvider") return true;
    return false;
}

const char* const PRECISIONS[] = {"auto", "fp32", "bf16"};
const char* const OPENVINO_BACKENDS[] = {"openvino", "openvino-bf16"};

bool is_openvino(const std::string& b) { return b == OPENVINO_BACKENDS[0] || b == OPENVINO_BACKENDS[1]; }

// every graph on `name` (opened unless `open` is false), named for the plan
Engines on_one(const Bundle& b, const std::string& name, int threads, const std::string& reason, bool open) {
    Engines out;
    for (const std::string& g : graphs_of(b)) {
        if (open) out.engines[g] = create_engine(b, g, name, threads);
        out.graph_backends.emplace_back(g, name);
    }
    out.backend = name;
    out.reason = reason;
    return out;
}

// Pipeline.backend_reason's tail: "; skipped tensorrt: why; cuda: why" ("" when none)
std::string skipped_text(const Pairs& skipped) {
    std::string s;
    for (const auto& [name, why] : skipped) s += (s.empty() ? "; skipped " : "; ") + name + ": " + why;
    return s;
}

// why a GPU backend cannot run here ("": it can)
std::string gpu_unavailable(const Bundle& b, const std::string& name) {
    if (name == "tensorrt") return tensorrt_unavailable(b);
    return has_cuda() ? "" : "the linked ONNX Runtime has no CUDAExecutionProvider (a CPU build)";
}

}  // namespace

void verify_graphs(const Bundle& b) {
    Ort::SessionOptions so;
    so.SetLogSeverityLevel(ORT_LOGGING_LEVEL_FATAL);
    so.SetGraphOptimizationLevel(ORT_DISABLE_ALL);
    so.DisableCpuMemArena();
    for (const std::string& g : graphs_of(b)) {
        const std::string path = b.graph_path(g);
        try {
            Ort::Session session(env(), path.c_str(), so);
        } catch (const Ort::Exception& e) {
            const std::string msg = first_line(e.what(), "OrtException");
            if (out_of_memory(msg))
                throw Error(LDMIND_ERR_MEMORY, "the machine ran out of memory while loading " + base_name(path) +
                                                   "; free memory and retry");
            engine_error(path + ": onnxruntime cannot load this graph (" + msg + ")");
        }
    }
}

std::unique_ptr<Engine> create_engine(const Bundle& b, const std::string& graph, const std::string& backend,
                                      int threads) {
    if (backend == "tensorrt") return tensorrt_engine(b, graph);
    if (is_openvino(backend)) return openvino_engine(b, graph, backend, threads);
    return std::make_unique<OrtEngine>(b.graph_path(graph), graph, backend, threads);
}

// runtime/engine.py select: an explicit backend for every graph, or auto: the GPU backends
// (TensorRT, then ONNX Runtime's CUDA) where one opens, else each graph on the fastest CPU
// backend allowed for it (choice.cpp, runtime/backends/choice.py)
Engines create_engines(const Bundle& b, const std::string& backend_in, const std::string& precision, int threads,
                       bool open) {
    if (std::find(std::begin(PRECISIONS), std::end(PRECISIONS), precision) == std::end(PRECISIONS))
        engine_error("unknown precision '" + precision + "'; choose from auto, fp32, bf16");   // EngineError, as Python
    std::string backend = backend_in;
    if (backend == "auto" && precision == "bf16") backend = "openvino-bf16";
    if (backend != "auto") {
        const std::string reason = backend_in == "auto" ? "auto" : "requested";
        const std::string own = backend == "cpu" || backend == "openvino" ? "fp32" : backend == "openvino-bf16" ? "bf16" : "";
        if (precision != "auto" && !own.empty() && own != precision)
            engine_error("backend '" + backend + "' runs " + own + ", not " + precision);
        if (backend == "tensorrt") {
            const std::string why = tensorrt_unavailable(b);
            if (!why.empty()) engine_error("backend tensorrt: " + why);
        } else if (backend == "cuda") {
            if (!has_cuda())
                engine_error("backend cuda: the linked ONNX Runtime has no CUDAExecutionProvider (a CPU build); "
                             "use --backend cpu or link onnxruntime-gpu");
        } else if (is_openvino(backend)) {
            const std::string why = openvino_unavailable();
            if (!why.empty()) engine_error("backend '" + backend + "' is not available: " + why);
        } else if (backend != "cpu") {
            input_error("backend must be one of auto, cpu, cuda, tensorrt, openvino, openvino-bf16 (this library), "
                        "got '" + backend + "'");
        }
        return on_one(b, backend, threads, reason, open);
    }
    Pairs skipped;
    for (const std::string name : {"tensorrt", "cuda"}) {
        std::string why = gpu_unavailable(b, name);
        if (why.empty()) {
            try {
                return on_one(b, name, threads, "auto: the fastest backend that opens" + skipped_text(skipped), open);
            } catch (const Error& e) {
                if (e.code != LDMIND_ERR_ENGINE) throw;
                why = e.what();
            }
        }
        skipped.emplace_back(name, why);
    }
    Engines out;
    const CpuPlan plan = cpu_plan(b, threads, precision == "fp32", open ? &out.engines : nullptr);
    out.graph_backends = plan.backends;
    for (const auto& [g, name] : plan.backends)
        out.backend = out.backend.empty() || out.backend == name ? name : "mixed";
    skipped.insert(skipped.end(), plan.passed_over.begin(), plan.passed_over.end());
    out.reason = "auto: " + plan.describe() + skipped_text(skipped);
    return out;
}

}  // namespace ldmind::core
