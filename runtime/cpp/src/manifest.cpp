// The engine directory: manifest.json read and verified as export/manifest.py's
// load_manifest and runtime/bundle.py's load_bundle do, with their messages.  The manifest's
// fields, types and ranges are not written here: they are the schema's (export/
// manifest.schema.json), walked from the table generated from it (manifest_schema.hpp).
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "core.hpp"
#include "json.hpp"
#include "manifest_schema.hpp"

namespace ldmind::core {

void input_error(const std::string& m) { throw Error(LDMIND_ERR_INPUT, m); }
void engine_error(const std::string& m) { throw Error(LDMIND_ERR_ENGINE, m); }

std::string fmt(const char* f, ...) {
    va_list a, b;
    va_start(a, f);
    va_copy(b, a);
    int n = std::vsnprintf(nullptr, 0, f, a);
    va_end(a);
    std::string s(static_cast<size_t>(n) + 1, '\0');
    std::vsnprintf(s.data(), s.size(), f, b);
    va_end(b);
    s.resize(static_cast<size_t>(n));
    return s;
}

namespace {

bool is_dir(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode); }
bool is_file(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode); }
bool exists(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0; }

// str(Path(p)) for the paths users type: no trailing slashes, no "./" prefix
std::string norm(std::string p) {
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    while (p.size() > 2 && p.compare(0, 2, "./") == 0) p.erase(0, 2);
    return p;
}

// Python's repr of a JSON value as json.loads gives it (an object: a dict in the file's key order)
std::string py_repr(const json::Value& v) {
    std::string s;
    switch (v.kind) {
        case json::Value::Null: return "None";
        case json::Value::Bool: return v.b ? "True" : "False";
        case json::Value::Number: return v.integral ? std::to_string(v.i) : py_float(v.num);
        case json::Value::String: return py_str(v.str);
        case json::Value::Array:
            for (const auto& x : v.arr) s += (s.empty() ? "" : ", ") + py_repr(x);
            return "[" + s + "]";
        default:
            for (const auto& [k, x] : v.obj) s += (s.empty() ? "" : ", ") + py_str(k) + ": " + py_repr(x);
            return "{" + s + "}";
    }
}

// Python's repr of a JSON value as the manifest messages print it (export/manifest.py _short)
std::string repr(const json::Value* v) {
    if (!v) return "None";
    const std::string text = v->kind == json::Value::Array ? "list" : v->kind == json::Value::Object ? "dict" : py_repr(*v);
    return text.size() <= 60 ? text : text.substr(0, 57) + "...";
}

// what graph `g` must declare as its inputs (or outputs), from export/specs.py's table
std::vector<Port> spec_ports(const Bundle& b, const std::string& g, bool outputs) {
    std::vector<Port> out;
    for (const auto& t : schema::SPEC_TENSORS) {
        if (schema::SPEC_GRAPHS[t.graph].name != g || t.output != outputs || (t.sr_only && !b.conditional)) continue;
        Port p{t.name, t.dtype, {}, {}};
        for (int k = t.first; k < t.first + t.count; ++k) {
            const schema::Dim& d = schema::SPEC_DIMS[k];
            p.shape.push_back(d.kind == schema::Dim::Size ? d.size
                              : d.kind == schema::Dim::ZChannels ? b.z_channels
                              : d.kind == schema::Dim::FeatureChannels ? b.feature_channels : -1);
            p.symbols.emplace_back(d.kind == schema::Dim::Symbol ? d.symbol : "");
        }
        out.push_back(p);
    }
    return out;
}

// whether a graph's declared "inputs"/"outputs" list equals `want` (Python's ==: a dict's keys
// in any order; a shape, of integers and symbol names by the schema, equal when its repr is)
bool declares(const json::Value& list, const std::vector<Port>& want) {
    if (list.arr.size() != want.size()) return false;
    for (size_t k = 0; k < want.size(); ++k) {
        const json::Value& t = list.arr[k];
        const json::Value *name = t.find("name"), *dtype = t.find("dtype"), *shape = t.find("shape");
        if (t.obj.size() != 3 || !name || !dtype || !shape || name->str != want[k].name ||
            dtype->str != want[k].dtype || py_repr(*shape) != shape_text(want[k].shape, want[k].symbols))
            return false;
    }
    return true;
}

// -- the schema walk (export/manifest.py schema_problem) ----------------------------------------
using schema::Op;

bool finite_number(const json::Value& v) { return v.kind == json::Value::Number && std::isfinite(v.num); }

bool of_type(const json::Value& v, unsigned types) {
    using namespace schema;
    switch (v.kind) {
        case json::Value::Null: return types & NUL;
        case json::Value::Bool: return types & BOOLEAN;
        case json::Value::Number: return ((types & INTEGER) && v.is_int()) || ((types & NUMBER) && finite_number(v));
        case json::Value::String: return types & STRING;
        case json::Value::Array: return types & ARRAY;
        default: return types & OBJECT;
    }
}

bool among(const std::string& s, const schema::Check& c) {
    for (int k = c.first; k < c.first + c.count; ++k)
        if (s == schema::NAMES[k]) return true;
    return false;
}

size_t code_points(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

const std::regex& compiled(const char* pattern) {
    static const std::map<std::string, std::regex> all = [] {
        std::map<std::string, std::regex> m;
        for (const auto& c : schema::CHECKS)
            if (c.op == Op::Pattern) m.emplace(c.pattern, std::regex(c.pattern));
        return m;
    }();
    return all.at(pattern);
}

// the keyword check c of a node fails for v (export/manifest.py: jsonschema's keywords, the
// type dialect of _finite_number and _integer)
bool fails(const schema::Check& c, const json::Value& v) {
    const bool number = finite_number(v);
    switch (c.op) {
        case Op::Type: return !of_type(v, c.types);
        case Op::Const: return !(v.kind == json::Value::Number && v.num == c.bound);
        case Op::Enum: return !(v.kind == json::Value::String && among(v.str, c));
        case Op::NotEnum: return v.kind == json::Value::String && among(v.str, c);
        case Op::MinItems: return v.kind == json::Value::Array && static_cast<double>(v.arr.size()) < c.bound;
        case Op::MaxItems: return v.kind == json::Value::Array && static_cast<double>(v.arr.size()) > c.bound;
        case Op::Minimum: return number && v.num < c.bound;
        case Op::ExclusiveMinimum: return number && v.num <= c.bound;
        case Op::Maximum: return number && v.num > c.bound;
        case Op::ExclusiveMaximum: return number && v.num >= c.bound;
        case Op::MaxLength: return v.kind == json::Value::String && static_cast<double>(code_points(v.str)) > c.bound;
        case Op::Pattern: return v.kind == json::Value::String && !std::regex_search(v.str, compiled(c.pattern));
        default: return false;   // Required and the keywords over members: schema_problem
    }
}

// key is one of the node's properties (its Properties check; null: it has none)
bool declared(const schema::Check* props, const std::string& key) {
    for (int j = props ? props->first : 0; props && j < props->first + props->count; ++j)
        if (key == schema::PROPERTIES[j].name) return true;
    return false;
}

std::string member(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

// The first place where v breaks schema::NODES[n], worded as export/manifest.py's schema_problem
// words it ("" when v conforms): a depth-first walk, each node's keywords in the schema's order,
// properties in the schema's order, other members in the manifest's.
std::string schema_problem(const json::Value& v, int n, const std::string& path) {
    const schema::Node& node = schema::NODES[n];
    const std::string name = path.empty() ? "the manifest" : path;
    const schema::Check* props = nullptr;
    for (int k = node.first; k < node.first + node.count; ++k)
        if (schema::CHECKS[k].op == Op::Properties) props = &schema::CHECKS[k];
    for (int k = node.first; k < node.first + node.count; ++k) {
        const schema::Check& c = schema::CHECKS[k];
        std::string why;
        if (c.op == Op::Required && v.kind == json::Value::Object) {
            std::string missing;
            for (int j = c.first; j < c.first + c.count; ++j)
                if (!v.find(schema::NAMES[j])) missing += (missing.empty() ? "'" : ", '") + std::string(schema::NAMES[j]) + "'";
            if (!missing.empty()) return name + " lacks key(s) [" + missing + "]";
        } else if (c.op == Op::Properties && v.kind == json::Value::Object) {
            for (int j = c.first; j < c.first + c.count && why.empty(); ++j)
                if (const json::Value* m = v.find(schema::PROPERTIES[j].name))
                    why = schema_problem(*m, schema::PROPERTIES[j].node, member(path, schema::PROPERTIES[j].name));
        } else if (c.op == Op::AdditionalProperties && v.kind == json::Value::Object) {
            for (const auto& [key, m] : v.obj) {
                if (declared(props, key)) continue;
                why = schema_problem(m, c.node, member(path, key));
                if (!why.empty()) break;
            }
        } else if (c.op == Op::Items && v.kind == json::Value::Array) {
            for (size_t i = 0; i < v.arr.size() && why.empty(); ++i)
                why = schema_problem(v.arr[i], c.node, path + "[" + std::to_string(i) + "]");
        } else if (fails(c, v)) {
            return name + " must be " + node.what + ", got " + repr(&v);
        }
        if (!why.empty()) return why;
    }
    return "";
}

// a value the schema has checked, as the int the library keeps it in
int to_int(const json::Value& v, const std::string& what, const std::string& where) {
    if (v.i > (1 << 30)) engine_error(where + ": " + what + " is too large for this build, got " + repr(&v));
    return static_cast<int>(v.i);
}

}  // namespace

namespace {

// the sha256 of what `feed` passes to its callback, as lowercase hex
template <class Feed>
std::string sha256_hex(Feed&& feed) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    feed([ctx](const char* p, size_t n) { EVP_DigestUpdate(ctx, p, n); });
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, md, &n);
    EVP_MD_CTX_free(ctx);
    std::string hex;
    for (unsigned int k = 0; k < n; ++k) hex += fmt("%02x", md[k]);
    return hex;
}

}  // namespace

std::string sha256_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) engine_error(path + ": cannot read");
    return sha256_hex([&f](auto&& update) {
        std::vector<char> buf(1 << 20);
        while (f) {
            f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
            if (f.gcount() > 0) update(buf.data(), static_cast<size_t>(f.gcount()));
        }
    });
}

std::string sha256_text(const std::string& text) {
    return sha256_hex([&text](auto&& update) { update(text.data(), text.size()); });
}

// a file the manifest lists: present, and (verify) with its sha256 (export/manifest.py _check_file)
static void check_file(const std::string& root, const Graph& entry, const std::string& what, const std::string& mpath,
                       bool verify) {
    const std::string path = root + "/" + entry.file;
    if (!is_file(path)) engine_error(path + ": missing (" + what + " listed in " + mpath + ")");
    if (!verify) return;
    const std::string got = sha256_file(path);
    if (got != entry.sha256)
        engine_error(path + ": sha256 mismatch (manifest " + entry.sha256.substr(0, 16) + "..., file " + got.substr(0, 16) +
                     "...): the file was modified or belongs to another export; re-export with `python -m export`");
}

Bundle load_bundle(const std::string& dir_in, bool verify) {
    const std::string root = norm(dir_in);
    if (!exists(root))
        engine_error("engine directory " + root + " not found; create it with `python -m export --checkpoint "
                     "CKPT --out " + root + "` (or run `make demo`)");
    if (!is_dir(root))
        engine_error(root + " is not a directory; --engines wants the folder written by `python -m export`");
    const std::string mpath = root + "/manifest.json";
    if (!is_file(mpath))
        engine_error(mpath + " not found: " + root + " is not an engine directory written by `python -m export`");
    std::ifstream f(mpath, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    if (!f) engine_error(mpath + ": cannot read");
    json::Value m;
    try {
        m = json::parse(ss.str());
    } catch (const json::JsonError& e) {
        engine_error(mpath + ": not readable JSON (" + e.what() + ")");
    }
    // export/manifest.py validate: the version, the schema, then what a schema cannot say
    if (m.kind != json::Value::Object)
        engine_error(mpath + ": the manifest must be an object, got " + repr(&m));
    const json::Value* version = m.find("format_version");
    if (!version || !version->is_int() || version->i != schema::MANIFEST_VERSION)
        engine_error(mpath + ": format_version " + repr(version) + ", this code reads " +
                     std::to_string(schema::MANIFEST_VERSION) + "; re-export with the matching `python -m export`");
    const std::string why = schema_problem(m, 0, "");
    if (!why.empty()) engine_error(mpath + ": " + why);
    const json::Value& lat = *m.find("latent");
    const json::Value& sched = *m.find("schedule");
    const json::Value& graphs = *m.find("graphs");
    Bundle b;
    b.root = root;
    b.format_version = schema::MANIFEST_VERSION;
    for (const auto& v : sched.find("alpha_bar")->arr) b.alpha_bar.push_back(v.num);
    const json::Value& T = *sched.find("timesteps");
    if (static_cast<size_t>(T.i) != b.alpha_bar.size())
        engine_error(mpath + ": schedule.alpha_bar has " + std::to_string(b.alpha_bar.size()) + " values for " +
                     std::to_string(T.i) + " timesteps");
    for (size_t k = 1; k < b.alpha_bar.size(); ++k)
        if (b.alpha_bar[k] > b.alpha_bar[k - 1])
            engine_error(mpath + ": schedule.alpha_bar must be a non-increasing list of numbers in (0, 1]");
    b.conditional = lat.find("conditional")->b;
    b.z_channels = to_int(*lat.find("z_channels"), "latent.z_channels", mpath);   // the graphs' shapes need them
    b.feature_channels = to_int(*lat.find("feature_channels"), "latent.feature_channels", mpath);
    // the graphs, in export/specs.py's order
    const std::vector<std::string> need = graphs_of(b);
    std::string missing;
    for (const auto& g : need)
        if (!graphs.find(g)) missing += (missing.empty() ? "'" : ", '") + g + "'";
    if (!missing.empty()) engine_error(mpath + ": 'graphs' lacks key(s) [" + missing + "]");
    for (const auto& g : need) {
        const json::Value& e = *graphs.find(g);
        Graph gr;
        for (const bool outputs : {false, true}) {
            const char* io = outputs ? "outputs" : "inputs";
            std::vector<Port> want = spec_ports(b, g, outputs);
            if (!declares(*e.find(io), want)) {
                std::string text;
                for (const Port& p : want)
                    text += (text.empty() ? "" : ", ") + ("{'name': " + py_str(p.name) + ", 'dtype': " + py_str(p.dtype) +
                                                          ", 'shape': " + shape_text(p.shape, p.symbols) + "}");
                engine_error(mpath + ": graph '" + g + "' " + io + " " + py_repr(*e.find(io)) + " differ from the declared [" +
                             text + "] (export/specs.py)");
            }
            (outputs ? gr.outputs : gr.inputs) = std::move(want);
        }
        gr.file = e.find("file")->str;
        gr.sha256 = e.find("sha256")->str;
        gr.precision = e.find("precision")->str;
        // TensorRT profiles: the largest batch, and each output at the profile maxima
        std::map<std::string, int64_t> top;
        for (const auto& [sym, mm] : e.find("profile")->obj) top[sym] = mm.arr[2].i;
        gr.max_batch = top.count("B") ? static_cast<int>(top["B"]) : 0;
        for (const auto& o : e.find("outputs")->arr) {
            std::vector<int64_t> shape;
            for (const auto& d : o.find("shape")->arr)
                shape.push_back(d.kind == json::Value::String ? (top.count(d.str) ? top[d.str] : 1) : d.i);
            gr.outputs_max.emplace_back(o.find("name")->str, shape);
        }
        if (const json::Value* cost = e.find("cost")) {
            GraphCost c;
            c.macs_per_cell = cost->find("macs_per_cell")->num;
            for (const auto& a : cost->find("attention")->arr)
                c.attention.push_back({a.find("stride")->num, a.find("channels")->num});
            for (const auto& t : cost->find("memory")->arr) c.memory.emplace_back(t.arr[0].num, t.arr[1].num);
            b.costs[g] = c;
        } else if (g != "liif") {
            engine_error(mpath + ": graph '" + g + "' lacks its measured cost; re-export with `python -m export`");
        }
        check_file(root, gr, "graph '" + g + "'", mpath, verify);
        b.graphs[g] = gr;
    }
    const json::Value& trt = *m.find("tensorrt");
    if (trt.kind == json::Value::Object) {
        auto info = std::make_unique<TrtInfo>();
        info->version = trt.find("version")->str;
        const json::Value& cc = *trt.find("compute_capability");
        info->compute_capability = cc.kind == json::Value::String ? cc.str : repr(&cc);
        info->gpu = trt.find("gpu")->str;
        for (const auto& [g, e] : trt.find("engines")->obj) {
            Graph eg;
            eg.file = e.find("file")->str;
            eg.sha256 = e.find("sha256")->str;
            check_file(root, eg, "engine '" + g + "'", mpath, verify);
            info->engines[g] = eg;
        }
        b.tensorrt = std::move(info);
    }
    // the conversion (runtime/bundle.py _bundle_from): every value below passed the schema
    b.name = m.find("model")->find("name")->str;
    b.precision = m.find("precision")->str;
    b.ae_downsample = to_int(*lat.find("ae_downsample"), "latent.ae_downsample", mpath);
    b.cond_scale = to_int(*lat.find("cond_scale"), "latent.cond_scale", mpath);
    b.unet_multiple = to_int(*lat.find("unet_multiple"), "latent.unet_multiple", mpath);
    b.train_latent = to_int(*lat.find("train_latent"), "latent.train_latent", mpath);
    b.tile_align = to_int(*lat.find("tile_align"), "latent.tile_align", mpath);
    const json::Value& gen = *lat.find("generation_latent");
    if (gen.kind == json::Value::Array) {
        b.gen_h = to_int(gen.arr[0], "latent.generation_latent", mpath);
        b.gen_w = to_int(gen.arr[1], "latent.generation_latent", mpath);
    }
    b.query_chunk = to_int(*m.find("liif")->find("query_chunk"), "liif.query_chunk", mpath);
    return b;
}

}  // namespace ldmind::core
