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

namespace {

Ort::Env& env() {
    static Ort::Env e(ORT_LOGGING_LEVEL_FATAL, "ldmind");   // function-local static: created once, thread-safe
    return e;
}

bool out_of_memory(std::string m) {
    std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return m.find("bad_alloc") != std::string::npos || m.find("failed to allocate") != std::string::npos ||
           m.find("out of memory") != std::string::npos || m.find("cannot allocate memory") != std::string::npos;
}

std::string first_line(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return "OrtException";
    size_t b = s.find('\n', a);
    std::string line = s.substr(a, b == std::string::npos ? std::string::npos : b - a);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    return line;
}

std::string base_name(const std::string& p) { return p.substr(p.rfind('/') + 1); }

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
            std::string msg = first_line(e.what());
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
            std::string msg = first_line(e.what());
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

}  // namespace

std::map<std::string, std::unique_ptr<Engine>> create_engines(const Bundle& b, const std::string& backend,
                                                              int threads, std::string* chosen) {
    std::string name = backend;
    std::map<std::string, std::unique_ptr<Engine>> out;
    const std::string trt_why = backend == "tensorrt" || backend == "auto" ? tensorrt_unavailable(b) : "";
    if (backend == "tensorrt" || (backend == "auto" && trt_why.empty())) {
        if (!trt_why.empty()) engine_error("backend tensorrt: " + trt_why);
        for (const auto& [g, info] : b.graphs) out[g] = tensorrt_engine(b, g);
        *chosen = "tensorrt";
        return out;
    }
    if (backend == "auto") {
        name = has_cuda() ? "cuda" : "cpu";
    } else if (backend == "cuda") {
        if (!has_cuda())
            engine_error("backend cuda: the linked ONNX Runtime has no CUDAExecutionProvider (a CPU build); "
                         "use --backend cpu or link onnxruntime-gpu");
    } else if (backend != "cpu") {
        input_error("backend must be one of auto, cpu, cuda, tensorrt (this library), got '" + backend + "'");
    }
    for (const auto& [g, info] : b.graphs) out[g] = std::make_unique<OrtEngine>(b.graph_path(g), g, name, threads);
    *chosen = name;
    return out;
}

}  // namespace ldmind::core
