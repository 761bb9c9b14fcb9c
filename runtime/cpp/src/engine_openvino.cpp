// Graphs on OpenVINO for the CPU (runtime/backends/openvino.py's OpenVINOEngine): backends
// `openvino` (fp32) and `openvino-bf16`.  The same compile settings as the Python engine, so
// that the same kernels run on the same inputs: the ONNX graph read as exported (no model
// cache), compiled for "CPU" with INFERENCE_PRECISION_HINT f32 or bf16 (never OpenVINO's own
// default, which is bf16 on CPUs with AVX-512 BF16 or AMX), PERFORMANCE_HINT LATENCY, and
// INFERENCE_NUM_THREADS only when threads are asked for.  The LIIF query tile is the manifest's
// query_chunk (the Python engine has no query_tile of its own).
//
// Shapes, as the Python engine: every call runs on a copy of the graph compiled with that
// call's input shapes fixed (ov::Model::clone, then reshape), compiled on the first call with
// those shapes.  The key is the shapes of all the call's inputs.  Fixed-shape kernels are
// 1.05-1.4x faster than dynamic ones, and the image is a function of the shapes alone, never of
// which shapes the process met before.  At load the graph is compiled once with its axes
// dynamic, only to prove OpenVINO can run it here, and dropped (OpenVINO lays out the weights on
// the first inference, which never comes).  At most openvino_static_limit(file bytes) copies
// are kept, least recently used dropped first (each holds the graph's weights again).
//
// Compiled only where CMake finds OpenVINO (LDMIND_WITH_OPENVINO; build.sh finds the Python
// wheel's); without it openvino_unavailable() says so and `auto` never offers it.
//
// Thread safety: a mutex guards the copies; one compilation at a time (a second thread wanting
// the same shapes waits for it and takes its copy).  Each copy keeps a pool of idle infer
// requests: a call takes one (creating one when all are busy) and returns it afterwards, so
// concurrent calls never share a request; a copy dropped while a call runs on it lives until
// that call ends.  Inputs are wrapped without a copy (share_inputs); outputs are copied out
// before the request goes back to the pool.
#include <sys/stat.h>

#include <algorithm>

#include "core.hpp"

namespace ldmind::core {

int openvino_static_limit(int64_t graph_bytes) {
    const int64_t fit = OPENVINO_STATIC_WEIGHT_BUDGET / std::max<int64_t>(graph_bytes, 1);
    return static_cast<int>(std::max<int64_t>(2, std::min<int64_t>(OPENVINO_STATIC_MAX, fit)));
}

}  // namespace ldmind::core

#ifdef LDMIND_WITH_OPENVINO
#include <openvino/openvino.hpp>

#include <list>
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

// a call's input shapes, sorted by name (the Python engine's key)
using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

Shapes shapes_of(const std::vector<Input>& in) {
    Shapes key;
    for (const auto& t : in) key.emplace_back(t.name, t.shape);
    std::sort(key.begin(), key.end());
    return key;
}

// each port by its ONNX name (openvino.py _names): OpenVINO gives a tensor several (an output is
// also known by its node's name, '/Mul_output_0'); the one the manifest declares when it is among them
template <typename Ports>
std::vector<SeenPort> port_names(const Ports& ports, const std::vector<Port>& declared) {
    std::vector<SeenPort> out;
    for (const auto& p : ports) {
        const auto names = p.get_names();
        const auto it = std::find_if(declared.begin(), declared.end(), [&](const Port& d) { return names.count(d.name); });
        out.push_back({it != declared.end() ? it->name : p.get_any_name(), "", {}, {}});
    }
    return out;
}

// one compiled fixed-shape copy and its pool of idle infer requests (the Python engine's _Compiled)
struct Compiled {
    ov::CompiledModel model;   // create_infer_request is thread-safe
    std::mutex mutex;
    std::vector<std::unique_ptr<ov::InferRequest>> idle;

    std::unique_ptr<ov::InferRequest> take() {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (!idle.empty()) {
                auto r = std::move(idle.back());
                idle.pop_back();
                return r;
            }
        }
        return std::make_unique<ov::InferRequest>(model.create_infer_request());
    }
    void give(std::unique_ptr<ov::InferRequest> r) {
        std::lock_guard<std::mutex> lock(mutex);
        idle.push_back(std::move(r));
    }
};

class OvEngine final : public Engine {
  public:
    OvEngine(const std::string& path, const std::string& graph, const Graph& declared, const std::string& backend,
             int threads, int max_static)
        : graph_(graph), backend_(backend) {
        config_ = {ov::hint::inference_precision(precision_of(backend)),
                   ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY)};
        if (threads > 0) config_.emplace(ov::inference_num_threads(threads));
        try {
            model_ = core().read_model(path);
            // compiled once with its axes dynamic: proves OpenVINO can run it here; dropped at once
            core().compile_model(model_, "CPU", config_);
        } catch (const std::exception& e) {
            load_error(path, "openvino", first_line(e.what(), "ov::Exception"));
        }
        const std::string why = io_mismatch(port_names(model_->inputs(), declared.inputs),
                                            port_names(model_->outputs(), declared.outputs), declared, true);
        if (!why.empty()) io_error(path, graph, why);
        struct stat st;
        max_static_ = static_cast<size_t>(
            max_static > 0 ? max_static : openvino_static_limit(stat(path.c_str(), &st) == 0 ? st.st_size : 0));
    }

    std::vector<Tensor> run(const std::vector<Input>& in, const std::vector<const char*>& outputs) const override {
        std::shared_ptr<Compiled> compiled;
        std::unique_ptr<ov::InferRequest> request;
        std::vector<Tensor> result;
        try {
            compiled = compiled_for(shapes_of(in));
            request = compiled->take();
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
            run_error(graph_, backend_, first_line(e.what(), "ov::Exception"));
        }
        compiled->give(std::move(request));
        return result;
    }

    // the input shapes of the copies held now, least recently used first (for the tests)
    std::vector<Shapes> static_shapes() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<Shapes> out;
        for (const auto& [key, c] : static_) out.push_back(key);
        return out;
    }

  private:
    std::string graph_, backend_;
    ov::AnyMap config_;
    std::shared_ptr<ov::Model> model_;   // as read; each copy is a clone of it
    size_t max_static_ = 2;
    mutable std::list<std::pair<Shapes, std::shared_ptr<Compiled>>> static_;   // least recently used first
    mutable std::mutex mutex_;       // guards static_
    mutable std::mutex compiling_;   // one compilation at a time

    // the held copy for `key`, moved to the most recent end (null when none); under mutex_
    std::shared_ptr<Compiled> touch(const Shapes& key) const {
        auto it = std::find_if(static_.begin(), static_.end(), [&](const auto& e) { return e.first == key; });
        if (it == static_.end()) return nullptr;
        static_.splice(static_.end(), static_, it);
        return static_.back().second;
    }

    // the fixed-shape copy for `key`, compiled on first use (runtime/backends/openvino.py _compiled_for)
    std::shared_ptr<Compiled> compiled_for(const Shapes& key) const {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (auto c = touch(key)) return c;
        }
        std::lock_guard<std::mutex> one(compiling_);
        std::shared_ptr<Compiled> c;
        {
            std::lock_guard<std::mutex> lock(mutex_);   // another thread may have compiled it meanwhile
            c = touch(key);
        }
        if (!c) {
            std::shared_ptr<ov::Model> copy = model_->clone();
            std::map<std::string, ov::PartialShape> shapes;
            for (const auto& [name, dims] : key) shapes.emplace(name, ov::PartialShape(ov::Shape(dims.begin(), dims.end())));
            copy->reshape(shapes);
            c = std::make_shared<Compiled>();
            c->model = core().compile_model(copy, "CPU", config_);
            std::lock_guard<std::mutex> lock(mutex_);
            static_.emplace_back(key, c);
            while (static_.size() > max_static_) static_.pop_front();
        }
        return c;
    }
};

}  // namespace

std::string openvino_unavailable() { return ""; }

std::string openvino_version() {
    // "2026.4.1-22982-e213a147257-releases/2026/4": the release, as the Python wheel's version
    const std::string build = ov::get_openvino_version().buildNumber;
    return build.substr(0, build.find('-'));
}

std::unique_ptr<Engine> openvino_engine(const Bundle& b, const std::string& graph, const std::string& backend,
                                        int threads, int max_static) {
    try {
        core();
    } catch (const std::exception& e) {
        engine_error("openvino cannot start (" + first_line(e.what(), "ov::Exception") + ")");
    }
    return std::make_unique<OvEngine>(b.graph_path(graph), graph, b.graphs.at(graph), backend, threads, max_static);
}

std::vector<std::string> openvino_static_shapes(const Engine& e) {
    std::vector<std::string> out;
    const auto* ov = dynamic_cast<const OvEngine*>(&e);
    if (!ov) return out;
    for (const Shapes& key : ov->static_shapes()) {
        std::string s;
        for (const auto& [name, dims] : key) {
            s += (s.empty() ? "" : " ") + name + "=";
            for (size_t k = 0; k < dims.size(); ++k) s += (k ? "x" : "") + std::to_string(dims[k]);
        }
        out.push_back(s);
    }
    return out;
}

}  // namespace ldmind::core

#else  // built without OpenVINO

namespace ldmind::core {

std::string openvino_unavailable() {
    return "this build of the library has no OpenVINO (it was not found when the library was compiled; "
           "build with the openvino wheel installed for $PYTHON, or -DOpenVINO_DIR=...)";
}

std::string openvino_version() { return "none"; }

std::unique_ptr<Engine> openvino_engine(const Bundle&, const std::string& graph, const std::string& backend, int,
                                        int) {
    engine_error(graph + " (" + backend + "): " + openvino_unavailable());
}

std::vector<std::string> openvino_static_shapes(const Engine&) { return {}; }

}  // namespace ldmind::core

#endif
