// The internals of the C++ runtime: the same functions, in the same order of floating-point
// operations, as the Python runtime and the shared math of ldmind_ref (each declaration names
// its Python original).  Built with -ffp-contract=off: a fused multiply-add would round
// differently from numpy.  Defaults, limits and messages: contract.hpp, generated from
// ldmind_ref/core/contract.py.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "contract.hpp"
#include "ldmind.h"
#include "pyfmt.hpp"

namespace ldmind::core {

// -- errors (runtime/errors.py) --------------------------------------------------------------
struct Error : std::runtime_error {
    ldmind_status code;
    Error(ldmind_status c, const std::string& m) : std::runtime_error(m), code(c) {}
};
[[noreturn]] void input_error(const std::string& m);
[[noreturn]] void engine_error(const std::string& m);
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
using text::py_float;   // Python's repr() of a float (pyfmt.hpp)
using text::py_str;     // Python's repr() of a str (pyfmt.hpp)

// -- the engine directory (runtime/bundle.py, export/manifest.py) ----------------------------
struct Attention { double stride, channels; };
struct GraphCost {
    double macs_per_cell = 0;
    std::vector<Attention> attention;
    std::vector<std::pair<double, double>> memory;   // [a, b]: a c + b c^2 bytes, c cells
};
struct Port {                          // an input or output as the manifest declares it
    std::string name, dtype;           // dtype as export/specs.py writes it: "float32", "int64"
    std::vector<int64_t> shape;        // each axis's fixed size; -1 where it is a symbol
    std::vector<std::string> symbols;  // per axis: its symbol ("B", "H"), "" where fixed
};
struct Graph {
    std::string file, sha256, precision;
    int max_batch = 0;                                                   // profile maximum of B
    std::vector<std::pair<std::string, std::vector<int64_t>>> outputs_max; // output shapes at the profile maxima
    std::vector<Port> inputs, outputs;                                   // as declared
};
struct TrtInfo {                      // the manifest's tensorrt block (python -m export --trt)
    std::string version, compute_capability, gpu;
    std::map<std::string, Graph> engines;   // file + sha256 of each serialized engine
};

struct Bundle {
    std::string root, name, precision;
    bool conditional = false;
    int z_channels = 0, feature_channels = 0, ae_downsample = 0, cond_scale = 0, unet_multiple = 0;
    int gen_h = 0, gen_w = 0;           // 0: no generation latent
    int train_latent = 0, tile_align = 0, query_chunk = 65536, format_version = 0;
    std::vector<double> alpha_bar;
    std::map<std::string, Graph> graphs;
    std::map<std::string, GraphCost> costs;   // graphs with a measured cost (not liif)
    std::unique_ptr<TrtInfo> tensorrt;        // null: no TensorRT engines
    std::string graph_path(const std::string& g) const { return root + "/" + graphs.at(g).file; }
    Bundle() = default;
    Bundle(Bundle&&) = default;
    Bundle& operator=(Bundle&&) = default;
};
Bundle load_bundle(const std::string& dir, bool verify);
std::string sha256_file(const std::string& path);
std::string sha256_text(const std::string& text);

// -- samplers (ldmind_ref/core/diffusion.py) ---------------------------------------------------
struct Step {
    bool solver = false;      // DPM-Solver++ step (SolverStep) or DDIM (DDIMStep)
    int t = 0;
    double alpha_bar_t = 0, alpha_bar_prev = 0, sigma_t = 0;
    double c_x = 0, c_d = 0, c_d_prev = 0;
    bool from_cond = false;   // the first step of a window that skips the noisiest steps (initial_latent)
};
// (skip, stop) of the n executed steps at a fidelity (diffusion.fidelity_window)
std::pair<int, int> fidelity_window(int n, double fidelity, bool conditional);
// throws std::invalid_argument with the Python message
std::vector<Step> sampling_schedule(const std::vector<double>& alpha_bar, int steps, double eta,
                                    const std::string& schedule, const std::string& sampler,
                                    double fidelity = 0.0, bool conditional = false);

// -- the RNG contract (ldmind_ref/core/noise.py) ----------------------------------------------
void gaussian(int64_t seed, int64_t stream, size_t n, float* out);
// diffusion.initial_latent: the n draws z [n, one] of stream 0 become the conditioning latent
// cond [one] noised to alpha_bar (float64, rounded once to float32), in place
void initial_latent(float* z, size_t n, const float* cond, size_t one, double alpha_bar);

// -- the latent tile plan (ldmind_ref/core/latent_tiles.py) ----------------------------------
struct TilePlan {
    int h = 0, w = 0, th = 0, tw = 0, tile = 0, overlap = 0;
    std::vector<int> ys, xs;
    std::vector<std::vector<double>> wy, wx;
    size_t size() const { return ys.size() * xs.size(); }
    bool tiled() const { return size() > 1; }
    TilePlan scaled(int r) const;
    float weight(size_t k, int y, int x) const {
        return static_cast<float>(wy[k / xs.size()][y] * wx[k % xs.size()][x]);
    }
};
TilePlan make_plan(int h, int w, int tile, int overlap, int align);
int native_latent(int side, int downsample, int align);
TilePlan whole(int h, int w);
using Fits = std::function<bool(int, int)>;
// throws std::invalid_argument with the Python message
TilePlan choose(int h, int w, int align, int train_latent, const std::map<std::string, GraphCost>& costs,
                int steps, int tile, int overlap, const Fits& fits);   // tile/overlap < 0: default
double graph_memory(const GraphCost& c, int h, int w);
int render_band(const TilePlan& p);
struct Band { int a, b, i0, i1; };
std::vector<Band> bands(int H, int h, int rows);

// -- memory (runtime/limits.py) ---------------------------------------------------------------
int64_t available_memory();
void check_output(int64_t num, int64_t H, int64_t W, int64_t extra);
int64_t graph_bytes(const std::map<std::string, GraphCost>& costs, int64_t batch, int h, int w);
int64_t graph_budget();
void check_latent(const std::map<std::string, GraphCost>& costs, int64_t batch, int h, int w);

// -- back-projection (ldmind_ref/core/consistency.py) -----------------------------------------
void backproject_inplace(uint8_t* out, int H, int W, const uint8_t* lr, int h, int w, int iterations);

// -- graphs on a backend (runtime/backends/) -------------------------------------------------------
struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
    size_t numel() const;
};
struct Input {                    // a borrowed input: float32 or int64 data
    const char* name;
    std::vector<int64_t> shape;
    const float* f = nullptr;
    const int64_t* i = nullptr;
};
class Engine {
  public:
    virtual ~Engine() = default;
    // outputs in the order of `outputs`; Error on failure
    virtual std::vector<Tensor> run(const std::vector<Input>& in, const std::vector<const char*>& outputs) const = 0;
    virtual int max_batch() const { return 0; }    // largest B a call may carry (0: unlimited)
    virtual int query_tile() const { return 0; }   // preferred LIIF queries per call (0: the manifest's)
};
// a backend's exception text as the user sees it (runtime/backends/base.py first_line,
// out_of_memory): its first line (`empty` when it has none); whether it is an allocation failure
std::string first_line(const std::string& s, const std::string& empty);
bool out_of_memory(std::string message);
std::string base_name(const std::string& path);
// the error for a graph file `library` could not load, and for a call of `graph` on `backend` that
// failed (runtime/backends/base.py load_error, Engine._error): out of memory (LDMIND_ERR_MEMORY),
// else the library's one-line reason `message` (LDMIND_ERR_ENGINE); one wording for every backend
[[noreturn]] void load_error(const std::string& path, const std::string& library, const std::string& message);
[[noreturn]] void run_error(const std::string& graph, const std::string& backend, const std::string& message);
// a port as a backend reports it: its name; for ONNX Runtime also its type, as ORT's Python API
// spells it ("tensor(float)"), and its shape (-1 where not fixed, `symbols` naming such axes, ""
// when unnamed)
struct SeenPort {
    std::string name, type;
    std::vector<int64_t> shape;
    std::vector<std::string> symbols;
};
// Python's repr of a shape as a list: each size >= 0 an int, else its symbol quoted, or None
// when it has none ("['B', 3, 'H', 'W']"); declared and reported shapes alike
std::string shape_text(const std::vector<int64_t>& shape, const std::vector<std::string>& symbols);
// how the ports a backend reports differ from the manifest's `declared` graph (""; they agree):
// runtime/backends/onnxruntime.py io_mismatch (names, types, ranks and fixed sizes), or with
// `names_only` base.py names_mismatch alone (OpenVINO: its ports carry no ONNX types)
std::string io_mismatch(const std::vector<SeenPort>& inputs, const std::vector<SeenPort>& outputs,
                        const Graph& declared, bool names_only);
// base.py io_error: the graph file at `path` is not the one its manifest entry describes
[[noreturn]] void io_error(const std::string& path, const std::string& graph, const std::string& why);
// the graphs a bundle runs, in pipeline order (base.graphs_of): the encoder only for super-resolution
std::vector<std::string> graphs_of(const Bundle& b);
// native TensorRT engines (engine_trt.cpp; built only where TensorRT's headers are found):
// the reason they cannot run here, or "" when they can
std::string tensorrt_unavailable(const Bundle& b);
std::unique_ptr<Engine> tensorrt_engine(const Bundle& b, const std::string& graph);
// OpenVINO on the CPU (engine_openvino.cpp; built only where OpenVINO is found): backends
// "openvino" (fp32) and "openvino-bf16"; the reason it cannot run here ("" when it can), the
// linked release ("2026.4.1"; "none" without it), one graph's engine
std::string openvino_unavailable();
std::string openvino_version();
// Each call runs on a copy of the graph compiled for the call's input shapes; a graph keeps at
// most openvino_static_limit(its file's bytes) copies, least recently used dropped first: as
// many as fit the weight budget, at least 2 (a tile group and its remainder alternate within a
// sampling step), at most OPENVINO_STATIC_MAX.  The values of runtime/backends/openvino.py's
// STATIC_WEIGHT_BUDGET, STATIC_MAX and static_limit: keep them equal
// (tests/cpp_openvino_cases.py compares them).
inline constexpr int64_t OPENVINO_STATIC_WEIGHT_BUDGET = int64_t{512} << 20;
inline constexpr int OPENVINO_STATIC_MAX = 8;
int openvino_static_limit(int64_t graph_bytes);
// max_static > 0: keep that many copies instead (the tests)
std::unique_ptr<Engine> openvino_engine(const Bundle& b, const std::string& graph, const std::string& backend,
                                        int threads, int max_static = 0);
// the input shapes of the copies an openvino engine holds now, least recently used first, each
// as "name=AxB name=C ..." sorted by name (the tests; empty for another engine)
std::vector<std::string> openvino_static_shapes(const Engine& e);
std::string ort_version();   // the linked ONNX Runtime's release ("1.32.0")
// one graph on one backend: cpu, cuda, tensorrt, openvino, openvino-bf16
std::unique_ptr<Engine> create_engine(const Bundle& b, const std::string& graph, const std::string& backend,
                                      int threads);

// -- which backend runs each graph (runtime/engine.py select, runtime/backends/choice.py) -------
using Seconds = std::map<std::string, std::map<std::string, double>>;   // backend -> graph -> s
using Pairs = std::vector<std::pair<std::string, std::string>>;          // ordered (key, value)
struct Engines {
    std::map<std::string, std::unique_ptr<Engine>> engines;   // graph -> engine
    Pairs graph_backends;      // (graph, backend) in pipeline order
    std::string backend;       // the backend running every graph, or "mixed"
    std::string reason;        // Pipeline.backend_reason: "requested", "auto", "auto: ..."
};
// `backend` auto, cpu, cuda, tensorrt, openvino, openvino-bf16; `precision` auto, fp32, bf16.
// open false: the plan and its reason only, no graph loaded (runtime/info.py: a GPU backend
// that is available, else choice.preview; `engines` stays empty)
Engines create_engines(const Bundle& b, const std::string& backend, const std::string& precision, int threads,
                       bool open = true);
// every graph opened by ONNX Runtime on the CPU with no optimisation (cheap), as
// runtime/backends/onnxruntime.py verify_graphs opens them for `info`, each checked against the
// manifest (io_mismatch); an engine error naming the file
void verify_graphs(const Bundle& b);

// the pieces of the CPU choice (choice.cpp), for `info` and the tests
std::string cpuinfo_path();                    // $LDMIND_CPUINFO, else /proc/cpuinfo
bool native_bf16();                            // ldmind_ref/core/cpuinfo.py native_bf16
std::string record_path();                     // runtime/backends/record.py record_path
std::string machine_key();                     // record.machine_key
std::string export_key(const Bundle& b);       // record.export_key
std::string gate_refusal(const Bundle& b, const std::string& precision, const std::string& graph);  // "": allowed
struct CpuPlan {               // choice.Plan
    Pairs backends;            // (graph, backend) in pipeline order
    std::string why;
    Pairs passed_over;         // (CPU backend, why it runs no graph)
    Seconds seconds;           // the recorded times decided by (empty: none)
    std::string describe() const;
};
// the CPU plan and its engines (choice.cpu_plan, minus the first-use measurement: without a
// record covering every allowed graph, every graph runs on cpu and `why` says so); engines
// null: the plan only, nothing opened (choice.preview's facts)
CpuPlan cpu_plan(const Bundle& b, int threads, bool fp32_only, std::map<std::string, std::unique_ptr<Engine>>* engines);

// -- the pipeline (runtime/pipeline.py) -------------------------------------------------------
struct Options {
    int steps = contract::DEFAULT_STEPS;
    double eta = contract::DEFAULT_ETA;
    double fidelity = contract::DEFAULT_FIDELITY;
    int64_t seed = contract::DEFAULT_SEED;
    int num_samples = contract::DEFAULT_NUM_SAMPLES;
    int backproject = contract::DEFAULT_BACKPROJECT;
    std::string sampler = contract::DEFAULT_SAMPLER, schedule = contract::DEFAULT_DDIM_SCHEDULE;
    int tile = 0, latent_tile = -1, latent_overlap = -1;
    ldmind_progress_fn progress = nullptr;
    void* user = nullptr;
};

class Pipeline {
  public:
    // load false: the bundle and the backend plan only (ldmind_inspect): no graph compiled, the
    // graphs opened unoptimised by ONNX Runtime when verify (verify_graphs); calls fail
    Pipeline(const std::string& dir, const std::string& backend, const std::string& precision, int threads,
             bool verify, bool load = true);
    const Bundle& bundle() const { return b_; }
    const std::string& backend() const { return backend_; }
    const std::string& backend_reason() const { return reason_; }
    const Pairs& graph_backends() const { return graph_backends_; }
    void output_size(int h, int w, double scale, int W_out, int H_out, int* H, int* W) const;
    void latent_shape(int h, int w, int* c, int* lh, int* lw) const;
    std::vector<float> upscale_latents(const uint8_t* rgb, int h, int w, const Options& o) const;
    void upscale(const uint8_t* rgb, int h, int w, double scale, int W_out, int H_out, const Options& o,
                 uint8_t* out) const;
    void generate(int W_out, int H_out, int lh, int lw, const Options& o, uint8_t* out) const;

  private:
    Bundle b_;
    std::string backend_, reason_;
    Pairs graph_backends_;
    std::map<std::string, std::unique_ptr<Engine>> engines_;   // empty: opened without its graphs
    const Engine& engine(const char* graph) const;

    std::vector<Step> schedule(const Options& o, bool conditional) const;   // conditional: upscale
    TilePlan plan(int h, int w, int steps, int n, int latent_tile, int latent_overlap, bool decoder_only,
                  int align) const;
    int tile_batch(const TilePlan& p, int n) const;
    int64_t working_bytes(int64_t n, int64_t h, int64_t w) const;
    int lr_latent(int side) const { return side * b_.cond_scale / b_.ae_downsample; }   // LR pixels -> latent cells
    void need_conditional(bool want) const;
    std::vector<float> latents_padded(const uint8_t* rgb, int h, int w, const Options& o, int* ch, int* cw) const;
    std::vector<float> cropped_latents(const uint8_t* rgb, int h, int w, const Options& o) const;
    std::vector<float> sample(const std::vector<float>* cond, int c, int h, int w, const std::vector<Step>& sched,
                              const Options& o, const TilePlan& p) const;
    void render(const std::vector<float>& z, int n, int h, int w, int H, int W, const Options& o,
                uint8_t* out) const;
    std::vector<float> decode(const float* z, int n, int h, int w, const TilePlan& p, const Options& o) const;
    void query(const std::vector<float>& f, int n, int h, int w, int H, int W, int band, int chunk, const Options& o,
               uint8_t* out) const;
    int max_batch_ = 0;                    // largest batch every engine takes (0: unlimited)
    int batch_of(int n) const { return max_batch_ ? std::min(n, max_batch_) : n; }
    std::vector<std::pair<int, int>> batches(int n) const;   // [a, b) sample ranges
};

}  // namespace ldmind::core
