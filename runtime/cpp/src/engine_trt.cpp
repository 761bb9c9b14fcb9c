// Native TensorRT engines listed in the manifest's tensorrt block (runtime/backends/tensorrt.py's
// design, minus CUDA graphs).  NOT EXECUTED HERE: compiled only where CMake finds TensorRT's
// headers and libraries (LDMIND_WITH_TENSORRT), written to the documented TensorRT 10 C++ API
// (name-based I/O: getNbIOTensors, getTensorName, getTensorIOMode, setInputShape,
// setTensorAddress, enqueueV3) and the CUDA runtime API.  The build machines have no GPU.
//
// One device buffer per I/O tensor at the profile maximum, registered once; a call copies the
// inputs in and the outputs out.  One execution context per engine, so calls are serialised
// by a mutex (the ONNX Runtime engines run concurrently).
#include "core.hpp"

#ifdef LDMIND_WITH_TENSORRT
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <fstream>
#include <mutex>
#include <sstream>

namespace ldmind::core {

namespace {

class Logger final : public nvinfer1::ILogger {
  public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kERROR) last = msg;
    }
    std::string last;
};

void ck(cudaError_t e, const std::string& graph) {
    if (e != cudaSuccess) engine_error(graph + " (tensorrt): CUDA error: " + cudaGetErrorString(e));
}

std::string version_string() {
    const int v = getInferLibVersion();   // major * 10000 + minor * 100 + patch (TensorRT 10)
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

class TrtEngine final : public Engine {
  public:
    TrtEngine(const Bundle& b, const std::string& graph) : graph_(graph) {
        const Graph& e = b.tensorrt->engines.at(graph);
        const std::string path = b.root + "/" + e.file;
        std::ifstream f(path, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        const std::string blob = ss.str();
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
        if (!engine_) engine_error(path + ": TensorRT could not deserialize this engine (" + logger_.last + ")");
        ctx_.reset(engine_->createExecutionContext());
        ck(cudaStreamCreate(&stream_), graph);
        const Graph& g = b.graphs.at(graph);
        max_batch_ = g.max_batch;
        for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
            const char* name = engine_->getTensorName(i);
            const bool input = engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
            std::vector<int64_t> top;
            if (input) {
                nvinfer1::Dims d = engine_->getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMAX);
                top.assign(d.d, d.d + d.nbDims);
            } else {
                for (const auto& [n, shape] : g.outputs_max)
                    if (n == name) top = shape;
            }
            size_t bytes = 4;   // float32 and int32; int64 timesteps below
            if (engine_->getTensorDataType(name) == nvinfer1::DataType::kINT64) bytes = 8;
            if (engine_->getTensorDataType(name) == nvinfer1::DataType::kHALF) bytes = 2;
            for (int64_t v : top) bytes *= static_cast<size_t>(std::max<int64_t>(v, 1));
            void* ptr = nullptr;
            ck(cudaMalloc(&ptr, bytes), graph);
            buffers_[name] = {ptr, bytes};
            ctx_->setTensorAddress(name, ptr);
        }
    }
    ~TrtEngine() override {
        for (auto& kv : buffers_) cudaFree(kv.second.first);
        if (stream_) cudaStreamDestroy(stream_);
    }
    int max_batch() const override { return max_batch_; }

    std::vector<Tensor> run(const std::vector<Input>& in, const std::vector<const char*>& outputs) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& t : in) {
            auto it = buffers_.find(t.name);
            if (it == buffers_.end()) engine_error(graph_ + " (tensorrt): the engine has no input " + t.name);
            size_t bytes = t.f ? 4 : 8;
            nvinfer1::Dims d{};
            d.nbDims = static_cast<int32_t>(t.shape.size());
            for (size_t k = 0; k < t.shape.size(); ++k) { d.d[k] = t.shape[k]; bytes *= static_cast<size_t>(t.shape[k]); }
            if (bytes > it->second.second)
                engine_error(graph_ + " (tensorrt): " + t.name + " exceeds the engine profile maximum; re-export with "
                             "a larger profile or use --backend cuda");
            if (!ctx_->setInputShape(t.name, d)) engine_error(graph_ + " (tensorrt): bad shape for " + t.name);
            ck(cudaMemcpyAsync(it->second.first, t.f ? static_cast<const void*>(t.f) : static_cast<const void*>(t.i), bytes,
                               cudaMemcpyHostToDevice, stream_), graph_);
        }
        if (!ctx_->enqueueV3(stream_)) engine_error(graph_ + " (tensorrt): enqueueV3 failed (" + logger_.last + ")");
        std::vector<Tensor> result;
        for (const char* name : outputs) {
            nvinfer1::Dims d = ctx_->getTensorShape(name);
            Tensor t;
            t.shape.assign(d.d, d.d + d.nbDims);
            t.data.resize(t.numel());
            ck(cudaMemcpyAsync(t.data.data(), buffers_.at(name).first, t.data.size() * sizeof(float),
                               cudaMemcpyDeviceToHost, stream_), graph_);
            result.push_back(std::move(t));
        }
        ck(cudaStreamSynchronize(stream_), graph_);
        return result;
    }

  private:
    std::string graph_;
    mutable Logger logger_;
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext> ctx_;
    cudaStream_t stream_ = nullptr;
    std::map<std::string, std::pair<void*, size_t>> buffers_;
    int max_batch_ = 0;
    mutable std::mutex mutex_;
};

}  // namespace

std::string tensorrt_unavailable(const Bundle& b) {
    if (!b.tensorrt || b.tensorrt->engines.empty())
        return "the manifest lists no TensorRT engines (export them on the target GPU)";
    for (const auto& [g, info] : b.graphs)
        if (!b.tensorrt->engines.count(g)) return "the manifest has no TensorRT engine for '" + g + "'";
    cudaDeviceProp props{};
    if (cudaGetDeviceProperties(&props, 0) != cudaSuccess) return "no usable CUDA device";
    const std::string cc = std::to_string(props.major) + "." + std::to_string(props.minor);
    if (b.tensorrt->version != version_string())   // export/manifest.py engine_mismatch
        return "engines were built with TensorRT " + b.tensorrt->version + ", this is " + version_string();
    if (b.tensorrt->compute_capability != cc)
        return "engines were built for compute capability " + b.tensorrt->compute_capability + " (" + b.tensorrt->gpu +
               "), this GPU is " + cc;
    return "";
}

std::unique_ptr<Engine> tensorrt_engine(const Bundle& b, const std::string& graph) {
    return std::make_unique<TrtEngine>(b, graph);
}

}  // namespace ldmind::core

#else  // built without TensorRT

namespace ldmind::core {

constexpr const char* NO_TENSORRT = "this build of the library has no TensorRT (its headers were not found when it was compiled)";

std::string tensorrt_unavailable(const Bundle&) { return NO_TENSORRT; }

std::unique_ptr<Engine> tensorrt_engine(const Bundle&, const std::string& graph) {
    engine_error(graph + " (tensorrt): " + NO_TENSORRT);
}

}  // namespace ldmind::core

#endif
