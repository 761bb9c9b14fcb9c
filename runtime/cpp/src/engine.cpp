// Graphs on ONNX Runtime (runtime/backends/onnxruntime.py's OrtEngine): the same session options as the
// Python runtime (default graph optimisations, no CPU arena, fatal-only logging), so the same
// kernels run on the same inputs.  Session::Run is thread-safe: one session serves every
// concurrent call.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cctype>

#include "core.hpp"
#include "manifest_schema.hpp"

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

void load_error(const std::string& path, const std::string& library, const std::string& message) {
    if (out_of_memory(message))
        throw Error(LDMIND_ERR_MEMORY, "the machine ran out of memory while loading " + base_name(path) +
                                           "; free memory and retry");
    engine_error(path + ": " + library + " cannot load this graph (" + message + ")");
}

void io_error(const std::string& path, const std::string& graph, const std::string& why) {
    engine_error(path + ": graph " + py_str(graph) + " does not match the manifest (" + why +
                 "): the file was swapped or replaced; re-export with `python -m export`");
}

namespace {

// Python's repr of a sorted list of names: "['cond', 'z_t']"
std::string sorted_names(std::vector<std::string> names) {
    std::sort(names.begin(), names.end());
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + py_str(n);
    return "[" + s + "]";
}

// export/specs.py dtypes as ORT's Python API names them (onnxruntime.py _ORT_TYPES)
std::string ort_type_of(const std::string& dtype) {
    static const std::map<std::string, std::string> types = {{"float32", "tensor(float)"}, {"float16", "tensor(float16)"},
                                                             {"int64", "tensor(int64)"}, {"int32", "tensor(int32)"}};
    const auto it = types.find(dtype);
    return it == types.end() ? dtype : it->second;
}

}  // namespace

std::string shape_text(const std::vector<int64_t>& shape, const std::vector<std::string>& symbols) {
    std::string s;
    for (size_t k = 0; k < shape.size(); ++k) {
        const std::string sym = k < symbols.size() ? symbols[k] : "";
        s += (k ? ", " : "") + (shape[k] >= 0 ? std::to_string(shape[k]) : sym.empty() ? "None" : py_str(sym));
    }
    return "[" + s + "]";
}

std::string io_mismatch(const std::vector<SeenPort>& inputs, const std::vector<SeenPort>& outputs,
                        const Graph& declared, bool names_only) {
    for (const std::string kind : {"inputs", "outputs"}) {
        const std::vector<SeenPort>& have = kind == "inputs" ? inputs : outputs;
        const std::vector<Port>& want = kind == "inputs" ? declared.inputs : declared.outputs;
        std::vector<std::string> have_names, want_names;
        for (const auto& p : have) have_names.push_back(p.name);
        for (const auto& p : want) want_names.push_back(p.name);
        const std::string h = sorted_names(have_names), w = sorted_names(want_names);
        if (h != w) return kind + " " + h + ", the manifest declares " + w;
        if (names_only) continue;
        const std::string one = kind.substr(0, kind.size() - 1);
        for (const SeenPort& p : have) {
            const Port& d = *std::find_if(want.begin(), want.end(), [&](const Port& q) { return q.name == p.name; });
            if (p.type != ort_type_of(d.dtype))
                return one + " " + py_str(p.name) + " is " + p.type + ", the manifest declares " + d.dtype;
            bool differs = p.shape.size() != d.shape.size();
            for (size_t k = 0; !differs && k < d.shape.size(); ++k) differs = d.shape[k] >= 0 && p.shape[k] != d.shape[k];
            if (differs)
                return one + " " + py_str(p.name) + " has shape " + shape_text(p.shape, p.symbols) +
                       ", the manifest declares " + shape_text(d.shape, d.symbols);
        }
    }
    return "";
}

void run_error(const std::string& graph, const std::string& backend, const std::string& message) {
    if (out_of_memory(message))
        throw Error(LDMIND_ERR_MEMORY, "the machine ran out of memory while running the " + graph + " graph (" +
                                           backend + "); ask for a smaller output, fewer samples or a smaller "
                                           "input, or free memory");
    engine_error(graph + " (" + backend + "): " + message);
}

std::vector<std::string> graphs_of(const Bundle& b) {
    std::vector<std::string> g;
    for (const auto& spec : schema::SPEC_GRAPHS)
        if (!spec.sr_only || b.conditional) g.push_back(spec.name);
    return g;
}

std::string ort_version() { return OrtGetApiBase()->GetVersionString(); }

namespace {

Ort::Env& env() {
    static Ort::Env e(ORT_LOGGING_LEVEL_FATAL, "ldmind");   // function-local static: created once, thread-safe
    return e;
}

// ORT's Python type text of an ONNX element type ("tensor(float)")
std::string ort_type_text(const Ort::TypeInfo& info) {
    if (info.GetONNXType() != ONNX_TYPE_TENSOR) return "non-tensor";
    static const std::map<ONNXTensorElementDataType, const char*> names = {
        {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, "float"},     {ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, "uint8"},
        {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, "int8"},       {ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16, "uint16"},
        {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16, "int16"},     {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, "int32"},
        {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, "int64"},     {ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, "string"},
        {ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, "bool"},       {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, "float16"},
        {ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, "double"},   {ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32, "uint32"},
        {ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64, "uint64"},   {ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, "bfloat16"}};
    const auto it = names.find(info.GetTensorTypeAndShapeInfo().GetElementType());
    return std::string("tensor(") + (it == names.end() ? "unknown" : it->second) + ")";
}

// a session's inputs (or outputs) as the manifest check reads them
std::vector<SeenPort> seen_ports(const Ort::Session& s, bool inputs) {
    Ort::AllocatorWithDefaultOptions alloc;
    std::vector<SeenPort> out;
    const size_t n = inputs ? s.GetInputCount() : s.GetOutputCount();
    for (size_t i = 0; i < n; ++i) {
        SeenPort p;
        p.name = (inputs ? s.GetInputNameAllocated(i, alloc) : s.GetOutputNameAllocated(i, alloc)).get();
        const Ort::TypeInfo info = inputs ? s.GetInputTypeInfo(i) : s.GetOutputTypeInfo(i);
        p.type = ort_type_text(info);
        if (info.GetONNXType() == ONNX_TYPE_TENSOR) {
            const auto t = info.GetTensorTypeAndShapeInfo();
            p.shape = t.GetShape();
            std::vector<const char*> syms(p.shape.size(), nullptr);
            t.GetSymbolicDimensions(syms.data(), syms.size());
            for (const char* sym : syms) p.symbols.emplace_back(sym ? sym : "");
        }
        out.push_back(std::move(p));
    }
    return out;
}

// io_mismatch of an opened graph; io_error naming its file when it is not the manifest's
void check_io(const Ort::Session& s, const std::string& path, const std::string& graph, const Graph& declared) {
    const std::string why = io_mismatch(seen_ports(s, true), seen_ports(s, false), declared, false);
    if (!why.empty()) io_error(path, graph, why);
}

// LIIF queries per call on the CPU: runtime/backends/onnxruntime.py's CPU_QUERY_TILE (the MLP's activations
// stay in cache; docs/BENCHMARKS.md "LIIF stage").  Only the speed depends on it: each query's
// RGB is computed alone, so any chunking gives the same image.
constexpr int CPU_QUERY_TILE = 4096;

class OrtEngine final : public Engine {
  public:
    int query_tile() const override { return backend_ == "cpu" ? CPU_QUERY_TILE : 0; }

    OrtEngine(const std::string& path, const std::string& graph, const Graph& declared, const std::string& backend,
              int threads)
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
            load_error(path, "onnxruntime", first_line(e.what(), "OrtException"));
        }
        check_io(*session_, path, graph, declared);
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
            run_error(graph_, backend_, first_line(e.what(), "OrtException"));
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
        std::unique_ptr<Ort::Session> session;
        try {
            session = std::make_unique<Ort::Session>(env(), path.c_str(), so);
        } catch (const Ort::Exception& e) {
            load_error(path, "onnxruntime", first_line(e.what(), "OrtException"));
        }
        check_io(*session, path, g, b.graphs.at(g));
    }
}

std::unique_ptr<Engine> create_engine(const Bundle& b, const std::string& graph, const std::string& backend,
                                      int threads) {
    if (backend == "tensorrt") return tensorrt_engine(b, graph);
    if (is_openvino(backend)) return openvino_engine(b, graph, backend, threads);
    return std::make_unique<OrtEngine>(b.graph_path(graph), graph, b.graphs.at(graph), backend, threads);
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
