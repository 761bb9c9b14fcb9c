// `auto` on the CPU: each graph on the fastest CPU backend allowed for it here, decided from the
// same inputs as the Python runtime, so that a C++ service runs what Python runs:
//   allowed    runtime/backends/choice.py allowed: cpu always; openvino where this build has
//              it; openvino-bf16 where the CPU computes bf16 natively (ldmind_ref/core/cpuinfo.py),
//              the export is fp32 and its quality gate passes the graph (runtime/precision_gate.py)
//   fastest    by the per-graph seconds the Python runtime recorded for this machine and export
//              (runtime/backends/record.py: the same file, the same keys)
// The Python runtime is the one writer of the record (its first `auto` load measures; C++
// never does): without a record covering every allowed graph, every graph runs on `cpu` and
// the reason says so.  Messages are the Python ones; tests/test_cpp_openvino.py pins the plans
// (graphs, backends, reasons) against Python's on the same records.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core.hpp"
#include "json.hpp"

namespace ldmind::core {

namespace {

const char* const CPU_BACKENDS[] = {"cpu", "openvino", "openvino-bf16"};   // ``cpu`` first: the fallback
const char* const MEASURE_ENV = "LDMIND_AUTO_MEASURE";

std::string precision_of(const std::string& backend) { return backend == "openvino-bf16" ? "bf16" : "fp32"; }

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

std::string strip(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t\r\n\f\v");
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(" \t\r\n\f\v") - a + 1);
}

// the value of the first `name :` line of cpuinfo ("" where absent or unreadable): cpuinfo._field
std::string cpu_field(const std::string& name) {
    std::ifstream f(cpuinfo_path());
    std::string line;
    while (std::getline(f, line)) {
        const size_t colon = line.find(':');
        if (colon != std::string::npos && strip(line.substr(0, colon)) == name) return strip(line.substr(colon + 1));
    }
    return "";
}

// JSON file contents (nullopt-like: kind Null where absent, unreadable or not JSON)
json::Value read_json(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return {};
    std::stringstream ss;
    ss << f.rdbuf();
    try {
        return json::parse(ss.str());
    } catch (const json::JsonError&) {
        return {};
    }
}

const json::Value* object(const json::Value* v, const std::string& key) {   // v[key] when an object
    const json::Value* o = v ? v->find(key) : nullptr;
    return o && o->kind == json::Value::Object ? o : nullptr;
}

bool truthy(const json::Value* v) {   // Python's bool() of a JSON value
    if (!v) return false;
    switch (v->kind) {
        case json::Value::Bool: return v->b;
        case json::Value::Number: return v->num != 0;
        case json::Value::String: return !v->str.empty();
        case json::Value::Array: return !v->arr.empty();
        case json::Value::Object: return !v->obj.empty();
        default: return false;
    }
}

// precision_gate._losses
std::string losses(const json::Value* m) {
    if (!truthy(m)) return "not measured";
    std::string out;
    for (const char* k : {"defaults", "raw"}) {
        const json::Value* v = m->find(std::string(k) + "_loss_db");
        if (v && v->kind == json::Value::Number) out += (out.empty() ? "" : ", ") + fmt("%s %+.3f dB", k, v->num);
    }
    return out;
}

// record.times: {backend: {graph: seconds}} recorded for `b` on this machine (empty: none)
Seconds recorded_times(const Bundle& b) {
    const json::Value data = read_json(record_path());
    const json::Value* entry = object(object(&data, machine_key()), export_key(b));
    const json::Value* s = object(entry, "seconds");
    Seconds out;
    if (!s) return out;
    for (const auto& [backend, graphs] : s->obj) {
        if (graphs.kind != json::Value::Object) return {};
        auto& row = out[backend];
        for (const auto& [g, v] : graphs.obj)
            if (v.kind == json::Value::Number) row[g] = v.num;
    }
    return out;
}

using Allowed = std::vector<std::pair<std::string, std::vector<std::string>>>;   // backend -> its graphs

const std::vector<std::string>* graphs_allowed(const Allowed& ok, const std::string& backend) {
    for (const auto& [name, gs] : ok)
        if (name == backend) return &gs;
    return nullptr;
}

bool has(const std::vector<std::string>* gs, const std::string& g) {
    return gs && std::find(gs->begin(), gs->end(), g) != gs->end();
}

bool timed(const Seconds& s, const std::string& backend, const std::string& g) {
    auto it = s.find(backend);
    return it != s.end() && it->second.count(g);
}

// choice.allowed: ({backend: the graphs it may run}, {backend: why it runs none})
Allowed allowed(const Bundle& b, bool fp32_only, Pairs* over) {
    Allowed ok;
    for (const std::string name : CPU_BACKENDS) {
        const std::string precision = precision_of(name);
        std::string why = name == "cpu" ? "" : openvino_unavailable();
        if (why.empty() && precision != "fp32" && fp32_only) why = "fp32 requested";
        if (why.empty() && precision == "bf16" && !native_bf16())
            why = "the CPU has no native bf16 (avx512_bf16 / amx_bf16 in /proc/cpuinfo)";
        if (why.empty() && precision != "fp32" && b.precision != "fp32") why = "the export is " + b.precision + " already";
        if (!why.empty()) {
            over->emplace_back(name, why);
            continue;
        }
        std::vector<std::string> mine;
        std::string first_refusal;
        for (const std::string& g : graphs_of(b)) {
            const std::string refused = gate_refusal(b, precision, g);
            if (refused.empty()) mine.push_back(g);
            else if (first_refusal.empty()) first_refusal = refused;
        }
        if (!mine.empty()) ok.emplace_back(name, mine);
        else over->emplace_back(name, first_refusal);
    }
    return ok;
}

// choice.covers: the record times every graph on every backend allowed for it
bool covers(const Seconds& s, const Allowed& ok) {
    if (s.empty()) return false;
    for (const auto& [name, gs] : ok)
        for (const std::string& g : gs)
            if (!timed(s, name, g)) return false;
    return true;
}

// choice.fastest: per graph, the allowed backend with the least recorded time (cpu on ties or gaps)
Pairs fastest(const Seconds& s, const Allowed& ok, const std::vector<std::string>& graphs) {
    Pairs out;
    for (const std::string& g : graphs) {
        std::string best = "cpu";
        double least = 0;
        bool any = false;
        for (const std::string name : CPU_BACKENDS)
            if (has(graphs_allowed(ok, name), g) && timed(s, name, g) && (!any || s.at(name).at(g) < least)) {
                least = s.at(name).at(g);
                best = name;
                any = true;
            }
        out.emplace_back(g, best);
    }
    return out;
}

Pairs all_cpu(const Bundle& b) {
    Pairs out;
    for (const std::string& g : graphs_of(b)) out.emplace_back(g, "cpu");
    return out;
}

}  // namespace

std::string cpuinfo_path() {
    const std::string p = env("LDMIND_CPUINFO");
    return p.empty() ? "/proc/cpuinfo" : p;
}

bool native_bf16() {
    std::istringstream flags(cpu_field("flags"));
    std::string f;
    while (flags >> f)
        if (f == "avx512_bf16" || f == "amx_bf16") return true;
    return false;
}

std::string record_path() {
    const std::string forced = env("LDMIND_BACKEND_RECORD");
    if (!forced.empty()) return forced;
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    std::string cache = xdg ? xdg : env("HOME") + "/.cache";
    return (cache.empty() ? "" : cache + "/") + "ldmind/backends.json";
}

std::string machine_key() {
    const std::string model = cpu_field("model name");
    return (model.empty() ? "unknown" : model) + " | " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) +
           " CPUs | onnxruntime " + ort_version() + " | openvino " + openvino_version();
}

std::string export_key(const Bundle& b) {
    std::string text;
    for (const auto& [g, spec] : b.graphs) text += g + ":" + spec.sha256 + ";";   // std::map: sorted, as Python's
    return b.name + "/" + b.precision + "/" + sha256_text(text).substr(0, 16);
}

std::string gate_refusal(const Bundle& b, const std::string& precision, const std::string& graph) {
    if (precision == "fp32") return "";
    const std::string path = b.root + "/precision_gate.json";   // export/specs.py PRECISION_GATE_NAME
    const json::Value data = read_json(path);
    if (data.kind != json::Value::Object)
        return "no quality gate for " + precision + " in " + b.root +
               " (measure one: python -m runtime.programs.precision_gate --engines " + b.root + ")";
    const json::Value* digests = object(&data, "graphs_sha256");
    bool same = digests && digests->obj.size() == b.graphs.size();
    for (const auto& [g, spec] : b.graphs) {
        const json::Value* d = same ? digests->find(g) : nullptr;
        same = same && d && d->kind == json::Value::String && d->str == spec.sha256;
    }
    if (!same) return path + " was measured on other graphs (re-run the gate after an export)";
    const json::Value* entry = object(object(&data, "precisions"), precision);
    if (!truthy(entry)) return path + " has no " + precision + " measurement";
    const json::Value* g = object(object(entry, "per_graph"), graph);
    if (!truthy(g)) return path + " has no " + precision + " measurement of " + graph;
    if (!truthy(g->find("pass"))) return graph + " in " + precision + " failed the quality gate (" + losses(g) + ")";
    const json::Value* together = object(entry, "together");
    if (!truthy(together ? together->find("pass") : nullptr))
        return "the graphs in " + precision + " together failed the quality gate (" + losses(together) + ")";
    return "";
}

std::string CpuPlan::describe() const {
    std::string out;
    for (const auto& [g, name] : backends) {
        std::string gain;
        if (name != "cpu" && timed(seconds, "cpu", g) && timed(seconds, name, g) && seconds.at(name).at(g) > 0)
            gain = fmt(" (%.2fx cpu)", seconds.at("cpu").at(g) / seconds.at(name).at(g));
        out += (out.empty() ? "" : ", ") + g + " " + name + gain;
    }
    return out + "; " + why;
}

CpuPlan cpu_plan(const Bundle& b, int threads, bool fp32_only, std::map<std::string, std::unique_ptr<Engine>>* engines) {
    CpuPlan plan;
    const Allowed ok = allowed(b, fp32_only, &plan.passed_over);
    auto create = [&] {
        if (!engines) return;   // the plan only
        engines->clear();
        for (const auto& [g, name] : plan.backends) (*engines)[g] = create_engine(b, g, name, threads);
    };
    const Seconds seconds = ok.size() == 1 ? Seconds{} : recorded_times(b);
    if (ok.size() == 1) {
        plan.backends = all_cpu(b);
        plan.why = "the only CPU backend allowed here";
    } else if (covers(seconds, ok)) {
        plan.backends = fastest(seconds, ok, graphs_of(b));
        plan.why = "recorded for this machine and export";
        plan.seconds = seconds;
        try {
            create();
            return plan;
        } catch (const Error& e) {
            const bool only_cpu = std::all_of(plan.backends.begin(), plan.backends.end(),
                                              [](const auto& gb) { return gb.second == "cpu"; });
            if (only_cpu || (e.code != LDMIND_ERR_ENGINE && e.code != LDMIND_ERR_MEMORY)) throw;
            plan.backends = all_cpu(b);
            plan.why = std::string("the recorded choice failed to load (") + e.what() + ")";
            plan.seconds.clear();
        }
    } else if (env(MEASURE_ENV) == "0") {
        plan.backends = all_cpu(b);
        plan.why = std::string("not measured (") + MEASURE_ENV + "=0)";
    } else {
        plan.backends = all_cpu(b);
        plan.why = "not measured: " + record_path() + " has no times for this machine (" + machine_key() +
                   ") and export (" + export_key(b) + "); the Python runtime records them on its first --backend "
                   "auto run (the C++ library only reads them)";
    }
    create();
    return plan;
}

}  // namespace ldmind::core
