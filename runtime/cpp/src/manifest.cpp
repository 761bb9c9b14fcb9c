// The engine directory: manifest.json read and verified as export/manifest.py's
// load_manifest and runtime/bundle.py's load_bundle do, with their messages.
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdarg>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core.hpp"
#include "json.hpp"

namespace ldmind::core {

constexpr int MANIFEST_VERSION = 3;   // export/specs.py

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

// Python's repr of a JSON scalar, as the manifest messages print it
std::string repr(const json::Value* v) {
    if (!v || v->kind == json::Value::Null) return "None";
    switch (v->kind) {
        case json::Value::Bool: return v->b ? "True" : "False";
        case json::Value::Number: return v->integral ? std::to_string(v->i) : py_float(v->num);
        case json::Value::String: return "'" + v->str + "'";
        case json::Value::Array: return "list";
        default: return "dict";
    }
}

struct Malformed : std::runtime_error { using std::runtime_error::runtime_error; };

const json::Value& at(const json::Value& v, const std::string& key) {
    const json::Value* r = v.find(key);
    if (!r) throw Malformed("KeyError: '" + key + "'");
    return *r;
}
int positive_int(const json::Value& v, const std::string& what, const std::string& where) {
    if (!v.is_int() || v.i < 1 || v.i > (1 << 30))
        engine_error(where + ": " + what + " must be a positive integer, got " + repr(&v));
    return static_cast<int>(v.i);
}
double number(const json::Value& v, const std::string& what) {
    if (v.kind != json::Value::Number) throw Malformed("TypeError: " + what + " is not a number");
    return v.num;
}

}  // namespace

std::string sha256_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) engine_error(path + ": cannot read");
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    std::vector<char> buf(1 << 20);
    while (f) {
        f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (f.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(f.gcount()));
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, md, &n);
    EVP_MD_CTX_free(ctx);
    std::string hex;
    for (unsigned int k = 0; k < n; ++k) hex += fmt("%02x", md[k]);
    return hex;
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
    if (m.kind != json::Value::Object)
        engine_error(mpath + ": the manifest must be an object, got " + repr(&m));
    const json::Value* version = m.find("format_version");
    if (!version || !version->is_int() || version->i != MANIFEST_VERSION)
        engine_error(mpath + ": format_version " + repr(version) + ", this code reads " +
                     std::to_string(MANIFEST_VERSION) + "; re-export with the matching `python -m export`");
    Bundle b;
    b.root = root;
    b.format_version = MANIFEST_VERSION;
    try {
        const auto& lat = at(m, "latent");
        const auto& sched = at(m, "schedule");
        const auto& graphs = at(m, "graphs");
        if (graphs.kind != json::Value::Object) throw Malformed("TypeError: graphs is not an object");
        const json::Value* model = m.find("model");
        const json::Value* name = model ? model->find("name") : nullptr;
        b.name = name && name->kind == json::Value::String ? name->str : root.substr(root.rfind('/') + 1);
        b.conditional = at(lat, "conditional").kind == json::Value::Bool && at(lat, "conditional").b;
        b.z_channels = positive_int(at(lat, "z_channels"), "latent.z_channels", mpath);
        b.feature_channels = positive_int(at(lat, "feature_channels"), "latent.feature_channels", mpath);
        b.ae_downsample = positive_int(at(lat, "ae_downsample"), "latent.ae_downsample", mpath);
        b.cond_scale = positive_int(at(lat, "cond_scale"), "latent.cond_scale", mpath);
        b.unet_multiple = positive_int(at(lat, "unet_multiple"), "latent.unet_multiple", mpath);
        b.train_latent = positive_int(at(lat, "train_latent"), "latent.train_latent", mpath);
        b.tile_align = positive_int(at(lat, "tile_align"), "latent.tile_align", mpath);
        const json::Value* gen = lat.find("generation_latent");
        if (gen && gen->kind == json::Value::Array) {
            if (gen->arr.size() != 2) engine_error(mpath + ": latent.generation_latent must be [h, w]");
            b.gen_h = positive_int(gen->arr[0], "latent.generation_latent", mpath);
            b.gen_w = positive_int(gen->arr[1], "latent.generation_latent", mpath);
        }
        for (const auto& v : at(sched, "alpha_bar").arr) b.alpha_bar.push_back(number(v, "alpha_bar"));
        const json::Value* liif = m.find("liif");
        if (liif && liif->find("query_chunk"))
            b.query_chunk = positive_int(at(*liif, "query_chunk"), "liif.query_chunk", mpath);
        const json::Value* prec = m.find("precision");
        b.precision = prec && prec->kind == json::Value::String ? prec->str : "fp32";
        const json::Value* T = sched.find("timesteps");
        if (T && T->is_int() && static_cast<size_t>(T->i) != b.alpha_bar.size())
            engine_error(mpath + ": schedule.alpha_bar has " + std::to_string(b.alpha_bar.size()) + " values for " +
                         std::to_string(T->i) + " timesteps");
        // the graphs, in export/specs.py's order
        std::vector<std::string> need;
        if (b.conditional) need.push_back("encoder");
        for (const char* g : {"unet_step", "decoder", "liif"}) need.push_back(g);
        std::string missing;
        for (const auto& g : need)
            if (!graphs.find(g)) missing += (missing.empty() ? "'" : ", '") + g + "'";
        if (!missing.empty()) engine_error(mpath + ": 'graphs' lacks key(s) [" + missing + "]");
        for (const auto& g : need) {
            const auto& e = at(graphs, g);
            Graph gr;
            gr.file = at(e, "file").str;
            gr.sha256 = at(e, "sha256").str;
            const json::Value* gp = e.find("precision");
            gr.precision = gp && gp->kind == json::Value::String ? gp->str : b.precision;
            if (gr.file.empty() || gr.file.find('/') != std::string::npos)
                engine_error(mpath + ": graphs." + g + ".file must be a plain file name, got '" + gr.file + "'");
            // TensorRT profiles: the largest batch, and each output at the profile maxima
            std::map<std::string, int64_t> top;
            if (const json::Value* prof = e.find("profile"))
                for (const auto& [sym, mm] : prof->obj)
                    if (mm.kind == json::Value::Array && mm.arr.size() == 3 && mm.arr[2].is_int()) top[sym] = mm.arr[2].i;
            gr.max_batch = top.count("B") ? static_cast<int>(top["B"]) : 0;
            if (const json::Value* outs = e.find("outputs"))
                for (const auto& o : outs->arr) {
                    std::vector<int64_t> shape;
                    for (const auto& d : at(o, "shape").arr)
                        shape.push_back(d.kind == json::Value::String ? (top.count(d.str) ? top[d.str] : 1) : d.i);
                    gr.outputs_max.emplace_back(at(o, "name").str, shape);
                }
            if (const json::Value* cost = e.find("cost")) {
                GraphCost c;
                c.macs_per_cell = number(at(*cost, "macs_per_cell"), "macs_per_cell");
                for (const auto& a : at(*cost, "attention").arr)
                    c.attention.push_back({number(at(a, "stride"), "stride"), number(at(a, "channels"), "channels")});
                for (const auto& t : at(*cost, "memory").arr) {
                    if (t.arr.size() != 2) throw Malformed("ValueError: memory terms are [a, b]");
                    c.memory.emplace_back(number(t.arr[0], "memory"), number(t.arr[1], "memory"));
                }
                b.costs[g] = c;
            } else if (g != "liif") {
                engine_error(mpath + ": graph '" + g + "' lacks its measured cost; re-export with `python -m export`");
            }
            check_file(root, gr, "graph '" + g + "'", mpath, verify);
            b.graphs[g] = gr;
        }
        const json::Value* trt = m.find("tensorrt");
        if (trt && trt->kind == json::Value::Object) {
            auto info = std::make_unique<TrtInfo>();
            info->version = at(*trt, "version").str;
            const auto& cc = at(*trt, "compute_capability");
            info->compute_capability = cc.kind == json::Value::String ? cc.str : repr(&cc);
            if (const json::Value* gpu = trt->find("gpu")) info->gpu = gpu->str;
            for (const auto& [g, e] : at(*trt, "engines").obj) {
                Graph eg;
                eg.file = at(e, "file").str;
                eg.sha256 = at(e, "sha256").str;
                check_file(root, eg, "engine '" + g + "'", mpath, verify);
                info->engines[g] = eg;
            }
            b.tensorrt = std::move(info);
        }
    } catch (const Malformed& e) {
        engine_error(mpath + ": malformed manifest (" + e.what() + ")");
    }
    // the schedule drives every sampler coefficient (runtime/bundle.py)
    bool ok = !b.alpha_bar.empty();
    for (size_t k = 0; ok && k < b.alpha_bar.size(); ++k) {
        double a = b.alpha_bar[k];
        ok = std::isfinite(a) && a > 0 && a <= 1 && (k == 0 || a <= b.alpha_bar[k - 1]);
    }
    if (!ok) engine_error(mpath + ": schedule.alpha_bar must be a non-increasing list of numbers in (0, 1]");
    return b;
}

}  // namespace ldmind::core
