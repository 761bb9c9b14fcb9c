// ldmind: the command line of the C++ runtime -- `python -m runtime`'s upscale, generate, info
// and profile over the C API (include/ldmind.h), with the same flags, defaults, messages and
// exit codes (runtime/cli.py): 0 done, 2 bad input, engines or options, or out of memory (one
// line on stderr, no output file), 1 internal error, 130 SIGINT, 143 SIGTERM.
//
// Outputs are written under a temporary name in their folder (fsync, then rename); a failure or
// a signal removes the temporary, and an existing output is replaced only by a complete one.
// What the Python CLI has and this one refuses (one line, exit 2): folder inputs and their
// flags, 16-bit and translucent inputs, WebP/TIFF/BMP, --depth 16, --plot, info --json, serve.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "image_io.hpp"
#include "json.hpp"
#include "ldmind.h"
#include "pyfmt.hpp"

using ldmind_cli::Image;
using ldmind_cli::ImageError;

namespace {

const char* PROG = "ldmind";
const char* DEFAULT_ENGINES = "engines/small";
constexpr int DEFAULT_STEPS = 10;
constexpr int DEFAULT_BACKPROJECT = 10;
constexpr int MAX_BACKPROJECT = 100;
constexpr int DEFAULT_QUALITY = 95;

// -- failures: each becomes one line and an exit status ------------------------------------------
struct Fail {              // "ldmind: error: MSG" and exit 2 (an LdmindError of the Python CLI)
    std::string msg;
};
struct UsageFail {         // argparse's "ldmind: error: MSG (see --help)", exit 2
    std::string msg;
};
struct Internal {          // "ldmind: internal error: MSG ...", exit 1
    std::string msg;
};
struct Stopped {           // a signal: 130 or 143
    int sig;
};

// -- signals ------------------------------------------------------------------------------------
volatile sig_atomic_t g_signal = 0;        // the first signal received
volatile sig_atomic_t g_cancellable = 0;   // inside a library call that polls the progress callback
char g_tmp[4096] = {0};                    // the temporary output being written ("" if none)

void say_stopped_and_exit(int sig) {
    const char* m = sig == SIGINT ? "ldmind: interrupted (SIGINT)\n" : "ldmind: terminated (SIGTERM)\n";
    ssize_t r = write(2, m, std::strlen(m));
    (void)r;
    _exit(128 + sig);
}

void on_signal(int sig) {
    const bool second = g_signal != 0;
    if (!second) g_signal = sig;
    if (g_cancellable && !second) return;   // the progress callback cancels the call
    if (g_tmp[0]) unlink(g_tmp);
    say_stopped_and_exit(g_signal);
}

void install_signals() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

void check_signal() {
    if (g_signal) throw Stopped{g_signal};
}

// -- Python's spellings --------------------------------------------------------------------------
// str(pathlib.Path(p))
std::string py_path(const std::string& s) {
    if (s.empty()) return ".";
    size_t lead = 0;
    while (lead < s.size() && s[lead] == '/') ++lead;
    std::vector<std::string> parts;
    size_t i = lead;
    while (i <= s.size()) {
        size_t j = s.find('/', i);
        if (j == std::string::npos) j = s.size();
        std::string part = s.substr(i, j - i);
        if (!part.empty() && part != ".") parts.push_back(part);
        i = j + 1;
    }
    std::string prefix = lead == 2 ? "//" : lead ? "/" : "";
    std::string out = prefix;
    for (size_t k = 0; k < parts.size(); ++k) out += (k ? "/" : "") + parts[k];
    return out.empty() ? "." : out;
}

struct PyPath {
    std::string s;   // normalised
    explicit PyPath(const std::string& p) : s(py_path(p)) {}
    std::string name() const {
        size_t k = s.rfind('/');
        std::string n = k == std::string::npos ? s : s.substr(k + 1);
        return n == "." ? "" : n;
    }
    std::string parent() const {
        size_t k = s.rfind('/');
        if (k == std::string::npos) return ".";
        if (k == 0) return "/";
        if (k == 1 && s[0] == '/' && s.size() > 1 && s[1] == '/') return "//";
        return s.substr(0, k);
    }
    std::string suffix() const {
        std::string n = name();
        size_t i = n.rfind('.');
        return (i != std::string::npos && i > 0 && i < n.size() - 1) ? n.substr(i) : "";
    }
    std::string stem() const {
        std::string n = name(), suf = suffix();
        return n.substr(0, n.size() - suf.size());
    }
    PyPath with_name(const std::string& n) const {
        std::string par = parent();
        return PyPath(par == "." ? n : par + "/" + n);
    }
};

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// repr() of a str
std::string py_repr(const std::string& s) {
    const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
    const char q = dq ? '"' : '\'';
    std::string out(1, q);
    for (unsigned char c : s) {
        if (c == '\\') out += "\\\\";
        else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + q;
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c == 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        } else out += static_cast<char>(c);
    }
    return out + q;
}

using ldmind::text::py_float;   // Python's repr of a float (src/pyfmt.hpp)

std::string strip(const std::string& s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

// Python's underscores in numbers: only between digits; removed, or false
bool drop_underscores(std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '_') {
            if (i == 0 || i + 1 == s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
                !std::isdigit(static_cast<unsigned char>(s[i + 1])))
                return false;
            continue;
        }
        out += s[i];
    }
    s = out;
    return true;
}

// int(text); false when Python would raise ValueError
bool py_int(const std::string& text, long long* v) {
    std::string s = strip(text);
    if (!drop_underscores(s) || s.empty()) return false;
    size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    if (i == s.size()) return false;
    for (size_t k = i; k < s.size(); ++k)
        if (!std::isdigit(static_cast<unsigned char>(s[k]))) return false;
    errno = 0;
    long long r = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == ERANGE) r = s[0] == '-' ? -(1LL << 62) : (1LL << 62);   // out of any range we accept
    *v = r;
    return true;
}

// float(text); false when Python would raise ValueError
bool py_number(const std::string& text, double* v) {
    std::string s = strip(text);
    if (!drop_underscores(s) || s.empty()) return false;
    std::string t = lower(s);
    size_t i = (t[0] == '+' || t[0] == '-') ? 1 : 0;
    std::string body = t.substr(i);
    if (body == "inf" || body == "infinity" || body == "nan") {
        *v = std::strtod(t.c_str(), nullptr);
        return true;
    }
    size_t k = 0, digits = 0;
    while (k < body.size() && std::isdigit(static_cast<unsigned char>(body[k]))) ++k, ++digits;
    if (k < body.size() && body[k] == '.') {
        ++k;
        while (k < body.size() && std::isdigit(static_cast<unsigned char>(body[k]))) ++k, ++digits;
    }
    if (!digits) return false;
    if (k < body.size() && body[k] == 'e') {
        ++k;
        if (k < body.size() && (body[k] == '+' || body[k] == '-')) ++k;
        size_t e0 = k;
        while (k < body.size() && std::isdigit(static_cast<unsigned char>(body[k]))) ++k;
        if (k == e0) return false;
    }
    if (k != body.size()) return false;
    *v = std::strtod(t.c_str(), nullptr);
    return true;
}

// -- argparse, as runtime/cli.py configures it ---------------------------------------------------
struct Conv {                 // checks a value; returns "" or argparse's type-error message
    std::function<std::string(const std::string&)> check;
};

Conv positive_number(const std::string& what) {
    return {[what](const std::string& t) -> std::string {
        double v;
        if (!py_number(t, &v)) return what + " must be a number, got " + py_repr(t);
        if (!std::isfinite(v) || v <= 0) return what + " must be a finite number > 0, got " + t;
        return "";
    }};
}
Conv size_arg() {
    return {[](const std::string& t) -> std::string {
        std::string l = lower(t);
        std::vector<std::string> parts;
        size_t i = 0;
        for (;;) {
            size_t j = l.find('x', i);
            parts.push_back(l.substr(i, j == std::string::npos ? std::string::npos : j - i));
            if (j == std::string::npos) break;
            i = j + 1;
        }
        long long w, h;
        if (parts.size() != 2 || !py_int(parts[0], &w) || !py_int(parts[1], &h))
            return "size must be WIDTHxHEIGHT in pixels, e.g. 512x384, got " + py_repr(t);
        if (w < 1 || h < 1) return "size must be positive, got " + py_repr(t);
        return "";
    }};
}
Conv int_at_least(long long lo, const std::string& what) {
    return {[lo, what](const std::string& t) -> std::string {
        long long v;
        if (!py_int(t, &v)) return what + " must be an integer, got " + py_repr(t);
        if (v < lo) return what + " must be >= " + std::to_string(lo) + ", got " + std::to_string(v);
        return "";
    }};
}
Conv eta_arg() {
    return {[](const std::string& t) -> std::string {
        double v;
        if (!py_number(t, &v)) return "eta must be a number, got " + py_repr(t);
        if (!std::isfinite(v) || v < 0) return "eta must be a finite number >= 0, got " + t;
        return "";
    }};
}
Conv int_in(long long lo, long long hi, const std::string& what) {
    return {[lo, hi, what](const std::string& t) -> std::string {
        long long v;
        if (!py_int(t, &v)) return what + " must be an integer, got " + py_repr(t);
        if (v < lo || v > hi)
            return what + " must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + std::to_string(v);
        return "";
    }};
}
Conv depth_arg() {
    return {[](const std::string& t) -> std::string {
        if (t == "auto" || t == "8" || t == "16") return "";
        return "--depth must be 8, 16 or auto, got " + py_repr(t);
    }};
}
Conv plain_int() {
    return {[](const std::string& t) -> std::string {
        long long v;
        return py_int(t, &v) ? "" : "invalid int value: " + py_repr(t);
    }};
}

struct Arg {
    std::vector<std::string> flags;   // empty: positional
    std::string dest;
    bool value = true;                // false: store_true
    bool required = false;
    bool optional_pos = false;        // positional with nargs='?'
    std::vector<std::string> choices;
    Conv conv;
    int group = -1;
    bool seen = false;
    std::string val;
    std::string name() const {
        if (flags.empty()) return dest;
        std::string n;
        for (size_t k = 0; k < flags.size(); ++k) n += (k ? "/" : "") + flags[k];
        return n;
    }
};

struct Parser {
    std::string command;
    std::vector<Arg> args;
    std::vector<bool> group_required;
    std::string help;

    Arg& add(std::vector<std::string> flags, const std::string& dest, Conv conv = {}, int group = -1) {
        Arg a;
        a.flags = std::move(flags);
        a.dest = dest;
        a.conv = std::move(conv);
        a.group = group;
        args.push_back(a);
        return args.back();
    }
    Arg& flag(std::vector<std::string> flags, const std::string& dest) {
        Arg& a = add(std::move(flags), dest);
        a.value = false;
        return a;
    }
    Arg& positional(const std::string& dest, bool optional = false) {
        Arg& a = add({}, dest);
        a.optional_pos = optional;
        return a;
    }
    int group(bool required) {
        group_required.push_back(required);
        return static_cast<int>(group_required.size()) - 1;
    }
    Arg* find(const std::string& dest) {
        for (auto& a : args)
            if (a.dest == dest) return &a;
        return nullptr;
    }
    bool has(const std::string& dest) { return find(dest)->seen; }
    std::string get(const std::string& dest, const std::string& def = "") {
        Arg* a = find(dest);
        return a->seen ? a->val : def;
    }
    long long get_int(const std::string& dest, long long def) {
        Arg* a = find(dest);
        long long v = def;
        if (a->seen) py_int(a->val, &v);
        return v;
    }
    double get_number(const std::string& dest, double def) {
        Arg* a = find(dest);
        double v = def;
        if (a->seen) py_number(a->val, &v);
        return v;
    }
    void size(const std::string& dest, int* w, int* h) {
        std::string l = lower(get(dest));
        size_t x = l.find('x');
        long long a = 0, b = 0;
        py_int(l.substr(0, x), &a);
        py_int(l.substr(x + 1), &b);
        *w = static_cast<int>(std::min<long long>(a, 1 << 30));
        *h = static_cast<int>(std::min<long long>(b, 1 << 30));
    }

    // (arg, option string, explicit value or none) for an option-like string (argparse's
    // _get_option_tuples, with its abbreviations)
    struct Match {
        Arg* arg;
        std::string opt;
        bool has_explicit;
        std::string explicit_val;
    };
    Arg* exact(const std::string& opt) {
        for (auto& a : args)
            for (auto& f : a.flags)
                if (f == opt) return &a;
        return nullptr;
    }
    std::vector<Match> prefix_matches(const std::string& s) {
        std::vector<Match> out;
        if (s.size() > 1 && s[0] == '-' && s[1] == '-') {
            size_t eq = s.find('=');
            std::string pre = eq == std::string::npos ? s : s.substr(0, eq);
            for (auto& a : args)
                for (auto& f : a.flags)
                    if (f.compare(0, pre.size(), pre) == 0)
                        out.push_back({&a, f, eq != std::string::npos, eq == std::string::npos ? "" : s.substr(eq + 1)});
        } else if (s.size() > 1 && s[0] == '-') {
            std::string short_pre = s.substr(0, 2), rest = s.substr(2);
            for (auto& a : args)
                for (auto& f : a.flags) {
                    if (f == short_pre) out.push_back({&a, f, !rest.empty(), rest});
                    else if (f.compare(0, s.size(), s) == 0) out.push_back({&a, f, false, ""});
                }
        }
        return out;
    }
    static bool negative_number(const std::string& s) {
        // ^-\d+$|^-\d*\.\d+$
        if (s.size() < 2 || s[0] != '-') return false;
        size_t i = 1, d1 = 0, d2 = 0;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++d1;
        if (i == s.size()) return d1 > 0;
        if (s[i] != '.') return false;
        ++i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++d2;
        return i == s.size() && d2 > 0;
    }
    // argparse's _parse_optional: is this string an option (known or not)?
    bool is_option(const std::string& s) {
        if (s.empty() || s[0] != '-') return false;
        if (exact(s)) return true;
        if (s.size() == 1) return false;
        size_t eq = s.find('=');
        if (eq != std::string::npos && exact(s.substr(0, eq))) return true;
        auto m = prefix_matches(s);
        if (m.size() > 1) ambiguous(s, m);
        if (m.size() == 1) return true;
        if (negative_number(s)) return false;
        if (s.find(' ') != std::string::npos) return false;
        return true;
    }
    [[noreturn]] void ambiguous(const std::string& s, const std::vector<Match>& m) {
        std::string opts;
        for (size_t k = 0; k < m.size(); ++k) opts += (k ? ", " : "") + m[k].opt;
        throw UsageFail{"ambiguous option: " + s + " could match " + opts};
    }

    void store(Arg& a, const std::string& v) {
        if (!a.choices.empty() && std::find(a.choices.begin(), a.choices.end(), v) == a.choices.end()) {
            std::string c;
            for (size_t k = 0; k < a.choices.size(); ++k) c += (k ? ", " : "") + py_repr(a.choices[k]);
            throw UsageFail{"argument " + a.name() + ": invalid choice: " + py_repr(v) + " (choose from " + c + ")"};
        }
        if (a.conv.check) {
            std::string m = a.conv.check(v);
            if (!m.empty()) throw UsageFail{"argument " + a.name() + ": " + m};
        }
        a.seen = true;
        a.val = v;
    }
    void conflict(Arg& a) {
        if (a.group < 0) return;
        for (auto& o : args)
            if (&o != &a && o.group == a.group && o.seen)
                throw UsageFail{"argument " + a.name() + ": not allowed with argument " + o.name()};
    }

    // parse argv (after the command); unknown strings go to extras
    void parse(const std::vector<std::string>& argv, std::vector<std::string>& extras) {
        std::vector<Arg*> pos;
        for (auto& a : args)
            if (a.flags.empty()) pos.push_back(&a);
        size_t next_pos = 0;
        bool only_pos = false;
        for (size_t i = 0; i < argv.size(); ++i) {
            const std::string& s = argv[i];
            if (!only_pos && s == "--") {
                only_pos = true;
                continue;
            }
            if (only_pos || !is_option(s)) {
                // a run of positional strings, assigned to the positionals left in order
                std::vector<std::string> run{s};
                while (i + 1 < argv.size() && (only_pos || (argv[i + 1] != "--" && !is_option(argv[i + 1]))))
                    run.push_back(argv[++i]);
                size_t r = 0;
                while (next_pos < pos.size()) {
                    Arg& a = *pos[next_pos];
                    if (r < run.size()) {
                        store(a, run[r++]);
                        ++next_pos;
                    } else if (a.optional_pos) {
                        ++next_pos;      // argparse consumes an optional positional with no string
                    } else {
                        break;
                    }
                }
                for (; r < run.size(); ++r) extras.push_back(run[r]);
                continue;
            }
            // an option
            Arg* a = nullptr;
            std::string opt = s;
            bool has_explicit = false;
            std::string explicit_val;
            if ((a = exact(s)) == nullptr) {
                size_t eq = s.find('=');
                if (eq != std::string::npos && (a = exact(s.substr(0, eq))) != nullptr) {
                    opt = s.substr(0, eq);
                    has_explicit = true;
                    explicit_val = s.substr(eq + 1);
                } else {
                    auto m = prefix_matches(s);
                    if (m.size() > 1) ambiguous(s, m);
                    if (m.empty()) {
                        extras.push_back(s);
                        continue;
                    }
                    a = m[0].arg;
                    opt = m[0].opt;
                    has_explicit = m[0].has_explicit;
                    explicit_val = m[0].explicit_val;
                }
            }
            for (;;) {
                if (a->dest == "help") {
                    std::fputs(help.c_str(), stdout);
                    std::exit(0);
                }
                if (!a->value) {
                    conflict(*a);
                    a->seen = true;
                    a->val = "1";
                    if (!has_explicit) break;
                    // -qX: combined single-dash flags, as argparse reads them
                    std::string next = std::string("-") + explicit_val[0];
                    Arg* b = (opt.size() == 2 && opt[0] == '-' && opt[1] != '-') ? exact(next) : nullptr;
                    if (!b) throw UsageFail{"argument " + a->name() + ": ignored explicit argument " + py_repr(explicit_val)};
                    a = b;
                    opt = next;
                    explicit_val = explicit_val.substr(1);
                    has_explicit = !explicit_val.empty();
                    continue;
                }
                if (has_explicit) {
                    store(*a, explicit_val);
                } else if (i + 1 < argv.size() && argv[i + 1] != "--" && !is_option(argv[i + 1])) {
                    store(*a, argv[++i]);
                } else {
                    throw UsageFail{"argument " + a->name() + ": expected one argument"};
                }
                conflict(*a);          // argparse converts the value first, then checks the group
                break;
            }
        }
        std::vector<std::string> missing;
        for (auto& a : args)
            if (!a.seen && ((a.flags.empty() && !a.optional_pos) || a.required)) missing.push_back(a.name());
        if (!missing.empty()) {
            std::string m;
            for (size_t k = 0; k < missing.size(); ++k) m += (k ? ", " : "") + missing[k];
            throw UsageFail{"the following arguments are required: " + m};
        }
        for (size_t g = 0; g < group_required.size(); ++g) {
            if (!group_required[g]) continue;
            bool any = false;
            std::string names;
            for (auto& a : args)
                if (a.group == static_cast<int>(g)) {
                    any = any || a.seen;
                    names += (names.empty() ? "" : " ") + a.name();
                }
            if (!any) throw UsageFail{"one of the arguments " + names + " is required"};
        }
    }
};

const std::vector<std::string> SAMPLERS{"ddim", "dpm++2m"};
const std::vector<std::string> SCHEDULES{"full", "paper"};
const std::vector<std::string> BACKENDS{"auto", "cpu", "cuda", "ort-trt", "tensorrt"};
const std::vector<std::string> COMMANDS{"upscale", "generate", "profile", "info", "serve"};

const char* TOP_HELP =
    "usage: ldmind [-h] {upscale,generate,profile,info} ...\n\n"
    "Arbitrary-scale upsampling and generation on exported ldmind graphs (the C++ runtime).\n\n"
    "  upscale   super-resolve an image to any scale or size\n"
    "  generate  sample new images (generation models)\n"
    "  profile   latency of one real request, stage by stage\n"
    "  info      summarise an engine directory\n\n"
    "Exit status: 0 done, 2 bad input, engines or options, or out of memory, 1 internal error,\n"
    "130 SIGINT, 143 SIGTERM.  See runtime/cpp/README.md for what differs from python -m runtime.\n";

const char* COMMON_HELP =
    "  --engines DIR         engine directory written by `python -m export` (default engines/small)\n"
    "  -n, --num-samples K   samples (default 1)\n"
    "  --steps N             sampler steps (default 10)\n"
    "  --eta E               DDIM eta: 0 deterministic, 1 DDPM-like (default 1)\n"
    "  --schedule {full,paper}  DDIM steps executed (default full)\n"
    "  --sampler {ddim,dpm++2m} (default dpm++2m)\n"
    "  --seed S              sample j uses seed + j (default 0)\n"
    "  --backend {auto,cpu,cuda}  graph backend (default auto)\n"
    "  --tile Q              output pixels per LIIF query (default: the manifest's query_chunk)\n"
    "  --latent-tile N       latent tile side in cells (default: from the model)\n"
    "  --latent-overlap N    overlap of neighbouring latent tiles in cells (default: a quarter of the tile)\n"
    "  --threads T           CPU threads per graph (default 0: ONNX Runtime decides)\n"
    "  --quality Q           JPEG output quality 1..100 (default 95)\n"
    "  -q, --quiet           no progress output\n";

void add_common(Parser& p) {
    p.add({"--engines"}, "engines");
    p.add({"-n", "--num-samples"}, "num_samples", int_at_least(1, "-n"));
    p.add({"--steps"}, "steps", int_at_least(1, "--steps"));
    p.add({"--eta"}, "eta", eta_arg());
    p.add({"--schedule"}, "schedule").choices = SCHEDULES;
    p.add({"--sampler"}, "sampler").choices = SAMPLERS;
    p.add({"--seed"}, "seed", plain_int());
    p.add({"--backend"}, "backend").choices = BACKENDS;
    p.add({"--tile"}, "tile", int_at_least(1, "--tile"));
    p.add({"--latent-tile"}, "latent_tile", int_at_least(1, "--latent-tile"));
    p.add({"--latent-overlap"}, "latent_overlap", int_at_least(0, "--latent-overlap"));
    p.add({"--threads"}, "threads", int_at_least(0, "--threads"));
    p.add({"--quality"}, "quality", int_in(1, 100, "--quality"));
    p.flag({"--webp-lossless"}, "webp_lossless");
    p.flag({"-q", "--quiet"}, "quiet");
}

Parser make_parser(const std::string& cmd) {
    Parser p;
    p.command = cmd;
    p.flag({"-h", "--help"}, "help");
    if (cmd == "upscale") {
        p.help = std::string("usage: ldmind upscale IN (--scale S | --size WxH) -o OUT [options]\n\n"
                             "  IN                    input image (PNG or JPEG, 8-bit, opaque)\n"
                             "  --scale S             scale factor s: output round(s*h) x round(s*w)\n"
                             "  --size WxH            output size WIDTHxHEIGHT\n"
                             "  -o, --output OUT      output image (.png, .jpg, .jpeg); with -n K: NAME_0.EXT ... NAME_{K-1}.EXT\n"
                             "  --overwrite           allow -o to be the input image itself (replaced)\n"
                             "  --backproject K       back-projection iterations onto the input (default 10; 0: raw sample)\n") +
                 COMMON_HELP;
        p.positional("input");
        int g = p.group(true);
        p.add({"--scale"}, "scale", positive_number("scale"), g);
        p.add({"--size"}, "size", size_arg(), g);
        p.add({"-o", "--output"}, "output").required = true;
        p.flag({"--overwrite"}, "overwrite");
        p.flag({"--strip-metadata"}, "strip_metadata");
        p.flag({"--recursive"}, "recursive");
        p.flag({"--skip-existing"}, "skip_existing");
        p.add({"--ext"}, "ext");
        p.add({"--depth"}, "depth", depth_arg());
        p.add({"--backproject"}, "backproject", int_in(0, MAX_BACKPROJECT, "--backproject"));
        add_common(p);
    } else if (cmd == "generate") {
        p.help = std::string("usage: ldmind generate --size WxH -o DIR [options]\n\n"
                             "  --size WxH            output size WIDTHxHEIGHT\n"
                             "  -o, --output DIR      output folder (created if missing): sample_seed{S+j}.png\n") +
                 COMMON_HELP;
        p.add({"--size"}, "size", size_arg()).required = true;
        p.add({"-o", "--output"}, "output").required = true;
        p.add({"--depth"}, "depth", depth_arg());
        add_common(p);
    } else if (cmd == "profile") {
        p.help =
            "usage: ldmind profile ENGINES [IMAGE] [--scale S | --size WxH] [--steps N] [--sampler S]\n"
            "                      [--backend B] [--threads T] [--repeat K] [--json OUT]\n\n"
            "The per-stage latency table of `python -m runtime profile`, measured from the progress\n"
            "callback's stage boundaries: one warm-up, then medians of --repeat requests (default 3).\n";
        p.positional("engines");
        p.positional("image", true);
        int g = p.group(false);
        p.add({"--scale"}, "scale", positive_number("scale"), g);
        p.add({"--size"}, "size", size_arg(), g);
        p.add({"--steps"}, "steps", int_at_least(1, "--steps"));
        p.add({"--sampler"}, "sampler").choices = SAMPLERS;
        p.add({"--backend"}, "backend").choices = BACKENDS;
        p.add({"--threads"}, "threads", int_at_least(0, "--threads"));
        p.add({"--repeat"}, "repeat", int_at_least(1, "--repeat"));
        p.add({"--json"}, "json");
        p.add({"--plot"}, "plot");
    } else if (cmd == "info") {
        p.help = "usage: ldmind info ENGINES [--no-verify]\n\n"
                 "Model, kind, precision, manifest format, graphs with their sizes, checksums, backend.\n";
        p.positional("engines");
        p.flag({"--json"}, "json");
        p.flag({"--no-verify"}, "no_verify");
    }
    return p;
}

// -- output -------------------------------------------------------------------------------------
void say(const std::string& line, FILE* f = stdout) {
    // informative once the work is done: a closed or full stream does not change the status
    if (std::fprintf(f, "%s\n", line.c_str()) < 0 || std::fflush(f) != 0) clearerr(f);
}

bool is_dir(const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}
bool same_file(const std::string& a, const std::string& b) {
    struct stat x, y;
    return stat(a.c_str(), &x) == 0 && stat(b.c_str(), &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

const std::vector<std::string> PYTHON_EXTENSIONS{".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"};

// io.check_output_path
void check_output_path(const PyPath& p, const std::string& input, bool overwrite) {
    const std::string ext = lower(p.suffix());
    if (std::find(PYTHON_EXTENSIONS.begin(), PYTHON_EXTENSIONS.end(), ext) == PYTHON_EXTENSIONS.end())
        throw Fail{p.s + ": cannot tell the output format from the extension " + py_repr(ext.empty() ? "(none)" : ext) +
                   "; use .png, .jpg, .jpeg, .webp, .tif, .tiff, .bmp"};   // Python's text (io.output_format)
    if (ext != ".png" && ext != ".jpg" && ext != ".jpeg")
        throw Fail{p.s + ": the C++ CLI writes PNG and JPEG only (.png, .jpg, .jpeg); for " + ext +
                   " use python -m runtime"};
    const std::string parent = p.parent();
    if (!is_dir(parent)) throw Fail{p.s + ": output folder " + parent + " does not exist"};
    long limit = pathconf(parent.c_str(), _PC_NAME_MAX);
    if (limit <= 0) limit = 255;
    const std::string name = p.name();
    if (static_cast<long>(name.size()) > limit)
        throw Fail{name.substr(0, 40) + "...: output file name is " + std::to_string(name.size()) +
                   " bytes long, the file system allows " + std::to_string(limit)};
    if (access(parent.c_str(), W_OK) != 0) throw Fail{p.s + ": output folder " + parent + " is not writable"};
    if (is_dir(p.s)) throw Fail{p.s + ": is a directory; give an image file name"};
    if (!input.empty() && !overwrite && same_file(p.s, input))
        throw Fail{p.s + ": is the input image; refusing to replace it (add --overwrite to replace the original)"};
}

bool pid_alive(long pid) {
    if (pid <= 0) return true;
    return kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

// io.remove_stale_temporaries: ".ldmind-<pid>-<8 hex>.tmp" of dead processes
void remove_stale_temporaries(const std::string& folder) {
    DIR* d = opendir(folder.c_str());
    if (!d) return;
    while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n.compare(0, 8, ".ldmind-") != 0 || n.size() < 8 + 1 + 1 + 8 + 4 || n.compare(n.size() - 4, 4, ".tmp") != 0)
            continue;
        std::string mid = n.substr(8, n.size() - 12);   // <pid>-<hex>
        size_t dash = mid.find('-');
        if (dash == std::string::npos || dash == 0 || mid.size() - dash - 1 != 8) continue;
        std::string pid = mid.substr(0, dash), hex = mid.substr(dash + 1);
        if (!std::all_of(pid.begin(), pid.end(), ::isdigit)) continue;
        if (!std::all_of(hex.begin(), hex.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f'); }))
            continue;
        long p = std::atol(pid.c_str());
        if (p != getpid() && !pid_alive(p)) unlink((folder + "/" + n).c_str());
    }
    closedir(d);
}

// io.save_image: encode into a temporary beside the output, fsync, rename
void save_image(const Image& img, const PyPath& p, int quality) {
    const std::string ext = lower(p.suffix());
    const std::string folder = p.parent();
    remove_stale_temporaries(folder);
    std::random_device rd;
    char tmp[4096];
    std::snprintf(tmp, sizeof tmp, "%s/.ldmind-%ld-%08x.tmp", folder.c_str(), static_cast<long>(getpid()), rd());
    std::snprintf(g_tmp, sizeof g_tmp, "%s", tmp);        // an interrupt from here on removes it
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        const int err = errno;
        g_tmp[0] = 0;                                        // not ours: never deleted
        throw Fail{p.s + ": cannot write (" + std::strerror(err) + ")"};
    }
    FILE* f = fdopen(fd, "wb");
    int err = 0;
    bool ok = f != nullptr;
    if (ok) {
        errno = 0;
        ok = ext == ".png" ? ldmind_cli::write_png(f, img) : ldmind_cli::write_jpeg(f, img, quality);
        if (!ok) err = errno ? errno : EIO;
        if (ok && fsync(fd) != 0) ok = false, err = errno;
        if (std::fclose(f) != 0 && ok) ok = false, err = errno;
    } else {
        err = errno;
        close(fd);
    }
    if (ok && g_signal) {                                    // stopped while writing
        unlink(tmp);
        g_tmp[0] = 0;
        throw Stopped{g_signal};
    }
    if (ok && std::rename(tmp, p.s.c_str()) != 0) ok = false, err = errno;
    if (!ok) {
        unlink(tmp);
        g_tmp[0] = 0;
        throw Fail{p.s + ": cannot write (" + std::strerror(err) + ")"};
    }
    g_tmp[0] = 0;
}

// -- progress (runtime/progress.py) -------------------------------------------------------------
double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Progress {
    bool quiet = false, tty = false;
    std::string header, stage;
    double t0 = 0, last = 0;
    int width = 30;

    void write(const std::string& s) {
        if (quiet) return;
        if (std::fputs(s.c_str(), stderr) < 0 || std::fflush(stderr) != 0) quiet = true;
    }
    void operator()(const char* stage_c, int done, int total) {
        if (quiet) return;
        if (!header.empty()) {
            write(header + "\n");
            header.clear();
        }
        const double now = now_s();
        std::string st = stage_c;
        char buf[512];
        if (st != stage) {
            stage = st;
            t0 = now;
            last = 0;
            if (!tty) write(st + ": " + std::to_string(total) + (st == "denoise" ? " steps\n" : " tiles\n"));
        }
        const bool finished = done >= total;
        if (tty && (finished || now - last > 0.1)) {
            last = now;
            const int filled = static_cast<int>(width * static_cast<double>(done) / std::max(total, 1));
            std::string bar = std::string(static_cast<size_t>(std::max(0, std::min(width, filled))), '#') +
                              std::string(static_cast<size_t>(width - std::max(0, std::min(width, filled))), '.');
            std::snprintf(buf, sizeof buf, "\r%-22s [%s] %d/%d %6.1f s%s", st.c_str(), bar.c_str(), done, total,
                          now - t0, finished ? "\n" : "");
            write(buf);
        } else if (finished && !tty) {
            std::snprintf(buf, sizeof buf, "%s: done in %.1f s\n", st.c_str(), now - t0);
            write(buf);
        }
    }
};

int progress_cb(const char* stage, int done, int total, void* user) {
    if (g_signal) return 1;
    (*static_cast<Progress*>(user))(stage, done, total);
    return g_signal ? 1 : 0;
}

// -- the library ---------------------------------------------------------------------------------
[[noreturn]] void library_failure(ldmind_status s) {
    std::string m = ldmind_last_error();
    if (s == LDMIND_ERR_CANCELLED) throw Stopped{g_signal ? static_cast<int>(g_signal) : SIGINT};
    if (s == LDMIND_ERR_INTERNAL) {
        const std::string pre = "internal error: ";
        if (m.compare(0, pre.size(), pre) == 0) m = m.substr(pre.size());
        throw Internal{m};
    }
    throw Fail{m};
}

struct Pipe {
    ldmind_pipeline* p = nullptr;
    ~Pipe() { ldmind_close(p); }
};

void open_pipeline(Pipe& pipe, const std::string& engines, const std::string& backend, int threads, bool verify) {
    ldmind_status s = ldmind_open(engines.c_str(), backend.c_str(), threads, verify ? 1 : 0, &pipe.p);
    check_signal();
    if (s != LDMIND_OK) library_failure(s);
}

struct Common {
    std::string engines, backend;
    int n, steps, backproject, threads, quality, tile, latent_tile, latent_overlap;
    double eta;
    long long seed;
    std::string sampler, schedule;
    bool quiet;
};

Common common(Parser& p) {
    Common c;
    c.engines = p.get("engines", DEFAULT_ENGINES);
    c.backend = p.get("backend", "auto");
    c.n = static_cast<int>(std::min<long long>(p.get_int("num_samples", 1), 1 << 30));
    c.steps = static_cast<int>(std::min<long long>(p.get_int("steps", DEFAULT_STEPS), 1 << 30));
    c.backproject = p.find("backproject") ? static_cast<int>(p.get_int("backproject", DEFAULT_BACKPROJECT)) : 0;
    c.threads = static_cast<int>(std::min<long long>(p.get_int("threads", 0), 1 << 30));
    c.quality = static_cast<int>(p.get_int("quality", DEFAULT_QUALITY));
    c.tile = static_cast<int>(std::min<long long>(p.get_int("tile", 0), 1 << 30));
    c.latent_tile = static_cast<int>(std::min<long long>(p.get_int("latent_tile", -1), 1 << 30));
    c.latent_overlap = static_cast<int>(std::min<long long>(p.get_int("latent_overlap", -1), 1 << 30));
    c.eta = p.get_number("eta", 1.0);
    c.seed = p.get_int("seed", 0);
    c.sampler = p.get("sampler", "dpm++2m");
    c.schedule = p.get("schedule", "full");
    c.quiet = p.has("quiet");
    return c;
}

void options_from(const Common& c, ldmind_options& o, Progress* progress) {
    ldmind_options_init(&o);
    o.steps = c.steps;
    o.eta = c.eta;
    o.seed = c.seed;
    o.num_samples = c.n;
    o.backproject = c.backproject;
    o.sampler = c.sampler.c_str();
    o.schedule = c.schedule.c_str();
    o.tile = c.tile;
    o.latent_tile = c.latent_tile;
    o.latent_overlap = c.latent_overlap;
    o.progress = progress ? progress_cb : nullptr;
    o.user = progress;
}

Progress make_progress(const Common& c, ldmind_pipeline* p) {
    Progress pr;
    pr.quiet = c.quiet;
    pr.tty = isatty(2) != 0;
    pr.header = std::string(ldmind_model_name(p)) + ": backend " + ldmind_backend(p) + " (" +
                (c.backend != "auto" ? "requested" : "auto") + ")";
    return pr;
}

// Output memory: address space reserved, pages committed as the library writes them, so that a
// request too large for the machine reaches the library's own check (runtime/limits.py's
// message) instead of failing here.
struct Buffer {
    uint8_t* ptr = nullptr;
    size_t size = 0;
    explicit Buffer(double bytes) {
        if (!(bytes < 9e18)) throw std::bad_alloc();
        size = static_cast<size_t>(std::max(1.0, bytes));
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        ptr = static_cast<uint8_t*>(p);
    }
    ~Buffer() { munmap(ptr, size); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    uint8_t* get() const { return ptr; }
};

void run_call(const std::function<ldmind_status()>& call) {
    g_cancellable = 1;
    ldmind_status s = call();
    g_cancellable = 0;
    check_signal();
    if (s != LDMIND_OK) library_failure(s);
}

void refuse_unsupported(Parser& p) {
    if (p.find("depth") && p.get("depth") == "16")
        throw Fail{"--depth 16: the C++ CLI writes 8-bit images; for 16-bit outputs use python -m runtime"};
}

int cmd_upscale(Parser& p) {
    const std::string input_raw = p.get("input");
    const PyPath input(input_raw);
    if (is_dir(input_raw))
        throw Fail{input.s + ": folder inputs are not supported by the C++ CLI; give one image, or use "
                             "python -m runtime upscale DIR"};
    if (p.has("recursive") || p.has("skip_existing") || p.has("ext"))
        throw Fail{input.s + ": --recursive, --skip-existing and --ext apply to a folder input, and this is not a folder"};
    refuse_unsupported(p);
    const Common c = common(p);
    const PyPath out(p.get("output"));
    std::vector<PyPath> outs;
    if (c.n == 1) outs.push_back(out);
    else
        for (int j = 0; j < c.n; ++j) outs.push_back(out.with_name(out.stem() + "_" + std::to_string(j) + out.suffix()));
    for (const auto& o : outs) check_output_path(o, input_raw, p.has("overwrite"));
    Image lr = ldmind_cli::load_image(input_raw, input.s);
    check_signal();
    Pipe pipe;
    open_pipeline(pipe, c.engines, c.backend, c.threads, true);
    double scale = p.has("scale") ? p.get_number("scale", 0) : 0;
    int ow = 0, oh = 0;
    if (p.has("size")) p.size("size", &ow, &oh);
    if (!ldmind_is_conditional(pipe.p)) {
        // the library's refusal, first as in Python (it returns before touching the output)
        uint8_t none = 0;
        ldmind_options d;
        ldmind_options_init(&d);
        library_failure(ldmind_upscale(pipe.p, lr.rgb.data(), lr.width, lr.height, scale, ow, oh, &d, &none));
    }
    int H = 0, W = 0;
    ldmind_status s = ldmind_output_size(pipe.p, lr.width, lr.height, scale, ow, oh, &H, &W);
    if (s != LDMIND_OK) library_failure(s);
    Progress progress = make_progress(c, pipe.p);
    ldmind_options o;
    options_from(c, o, &progress);
    const size_t one = static_cast<size_t>(H) * W * 3;
    Buffer buf(static_cast<double>(c.n) * H * W * 3);
    run_call([&] { return ldmind_upscale(pipe.p, lr.rgb.data(), lr.width, lr.height, scale, ow, oh, &o, buf.get()); });
    for (int j = 0; j < c.n; ++j) {
        Image img;
        img.width = W;
        img.height = H;
        img.rgb.assign(buf.get() + one * j, buf.get() + one * (j + 1));
        save_image(img, outs[static_cast<size_t>(j)], c.quality);
        check_signal();
        say(outs[static_cast<size_t>(j)].s);
    }
    return 0;
}

int cmd_generate(Parser& p) {
    refuse_unsupported(p);
    const Common c = common(p);
    const PyPath out(p.get("output"));
    if (exists(out.s) && !is_dir(out.s))
        throw Fail{out.s + ": exists and is not a folder; -o wants a folder for generated images"};
    if (!exists(out.s) && !is_dir(out.parent()))
        throw Fail{out.s + ": parent folder " + out.parent() + " does not exist"};
    Pipe pipe;
    open_pipeline(pipe, c.engines, c.backend, c.threads, true);
    int W = 0, H = 0;
    p.size("size", &W, &H);
    Progress progress = make_progress(c, pipe.p);
    ldmind_options o;
    options_from(c, o, &progress);
    const size_t one = static_cast<size_t>(H) * W * 3;
    Buffer buf(static_cast<double>(c.n) * H * W * 3);
    run_call([&] { return ldmind_generate(pipe.p, W, H, 0, 0, &o, buf.get()); });
    if (mkdir(out.s.c_str(), 0777) != 0 && errno != EEXIST)
        throw Fail{out.s + ": cannot create the folder (" + std::strerror(errno) + ")"};
    for (int j = 0; j < c.n; ++j) {
        Image img;
        img.width = W;
        img.height = H;
        img.rgb.assign(buf.get() + one * j, buf.get() + one * (j + 1));
        const PyPath f(out.s + "/sample_seed" + std::to_string(c.seed + j) + ".png");
        save_image(img, f, c.quality);
        check_signal();
        say(f.s);
    }
    return 0;
}

std::string mib(double bytes) {
    char b[64];
    std::snprintf(b, sizeof b, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return b;
}

int cmd_info(Parser& p) {
    if (p.has("json")) throw Fail{"info --json is not supported by the C++ CLI; use python -m runtime info --json"};
    const std::string engines = p.get("engines");
    const bool verify = !p.has("no_verify");
    Pipe pipe;
    open_pipeline(pipe, engines, "auto", 0, verify);
    const PyPath root(engines);
    std::string text;
    {
        FILE* f = std::fopen((root.s + "/manifest.json").c_str(), "rb");
        if (!f) throw Fail{root.s + "/manifest.json: cannot read"};
        char b[65536];
        size_t n;
        while ((n = std::fread(b, 1, sizeof b, f)) > 0) text.append(b, n);
        std::fclose(f);
    }
    ldmind::json::Value m = ldmind::json::parse(text);
    auto str = [](const ldmind::json::Value* v, const std::string& def) {
        if (!v) return def;
        if (v->kind == ldmind::json::Value::String) return v->str;
        if (v->kind == ldmind::json::Value::Number) return v->integral ? std::to_string(v->i) : py_float(v->num);
        return def;
    };
    std::string graphs;
    if (const ldmind::json::Value* g = m.find("graphs"))
        for (const auto& [key, v] : g->obj) {
            const std::string file = str(v.find("file"), key);
            struct stat st;
            const double size = stat((root.s + "/" + file).c_str(), &st) == 0 ? static_cast<double>(st.st_size) : 0;
            graphs += (graphs.empty() ? "" : ", ") + file + " " + mib(size);
        }
    std::string lines = root.s + ": " + ldmind_model_name(pipe.p) + " (" +
                        (ldmind_is_conditional(pipe.p) ? "super-resolution" : "generation") + "), " +
                        str(m.find("precision"), "fp32") + ", manifest format " + str(m.find("format_version"), "?") + "\n";
    lines += "  graphs:    " + graphs + " (checksums " + (verify ? "verified" : "not checked") + ")\n";
    lines += std::string("  backend:   ") + ldmind_backend(pipe.p) + " (auto picks)";
    say(lines);
    return 0;
}

// -- profile (runtime/profile.py) -----------------------------------------------------------------
const std::vector<std::string> STAGES{"image decode", "encoder", "U-Net steps", "decoder", "LIIF queries",
                                      "back-projection", "image encode+write", "other"};

struct Recorder {           // profile.Recorder: stage boundaries as timestamps
    double t0 = 0, last = 0;
    std::map<std::string, double> wall;
    std::vector<double> steps;
    void reset() {
        t0 = last = now_s();
        wall.clear();
        steps.clear();
    }
};

int record_cb(const char* stage_c, int done, int, void* user) {
    if (g_signal) return 1;
    Recorder& r = *static_cast<Recorder*>(user);
    const double now = now_s();
    std::string stage = stage_c, name;
    if (stage.compare(0, 6, "render") == 0) name = "LIIF queries";
    else if (stage == "encode") name = "encoder";
    else if (stage == "denoise") name = "U-Net steps";
    else if (stage == "decode") name = "decoder";
    else if (stage == "back-project") name = "back-projection";
    else name = stage;
    if (done > 0) {
        r.wall[name] += now - r.last;
        if (name == "U-Net steps") r.steps.push_back(now - r.last);
    }
    r.last = now;
    return 0;
}

double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
double percentile(std::vector<double> v, double q) {   // numpy's default (linear)
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const double idx = q / 100 * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(idx)), hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

std::string json_str(const std::string& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') o += std::string("\\") + static_cast<char>(c);
        else if (c < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else o += static_cast<char>(c);
    }
    return o + "\"";
}
std::string json_num(double v) { return std::isfinite(v) ? py_float(v) : "NaN"; }

std::string fmtf(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmtf(const char* f, ...) {
    char b[1024];
    va_list a;
    va_start(a, f);
    std::vsnprintf(b, sizeof b, f, a);
    va_end(a);
    return b;
}

int cmd_profile(Parser& p) {
    if (p.has("plot")) throw Fail{"--plot is not supported by the C++ CLI; write --json and plot it, or use python -m runtime profile"};
    const std::string engines = p.get("engines");
    const bool has_image = p.has("image");
    const std::string image = p.get("image");
    if (has_image && !p.has("scale") && !p.has("size")) throw Fail{"give --scale or --size"};
    const bool has_json = p.has("json");
    const std::string json_path = p.get("json");
    if (has_json) {
        const PyPath jp(json_path);
        char* real = realpath(jp.parent().c_str(), nullptr);
        const bool ok = real && is_dir(real);
        std::free(real);
        if (!ok) throw Fail{json_path + ": output folder " + jp.parent() + " does not exist"};
    }
    const int steps = static_cast<int>(std::min<long long>(p.get_int("steps", DEFAULT_STEPS), 1 << 30));
    const std::string sampler = p.get("sampler", "dpm++2m"), backend = p.get("backend", "auto");
    const int repeat = static_cast<int>(std::min<long long>(p.get_int("repeat", 3), 1 << 20));
    const int threads = static_cast<int>(std::min<long long>(p.get_int("threads", 0), 1 << 30));
    Pipe pipe;
    open_pipeline(pipe, engines, backend, threads, true);
    const bool conditional = ldmind_is_conditional(pipe.p) != 0;
    if (!has_image && conditional) throw Fail{engines + ": a super-resolution model: give an IMAGE to upscale"};
    if (has_image && !conditional) throw Fail{engines + ": a generation model: give --size and no IMAGE"};
    if (!has_image && !p.has("size")) throw Fail{"generation: give --size WxH"};
    const double scale = p.has("scale") ? p.get_number("scale", 0) : 0;
    int ow = 0, oh = 0;
    if (p.has("size")) p.size("size", &ow, &oh);

    char dir_template[] = "/tmp/ldmind-profile-XXXXXX";
    const char* tmpdir = mkdtemp(dir_template);
    if (!tmpdir) throw Fail{std::string("cannot create a temporary folder (") + std::strerror(errno) + ")"};
    const std::string out_path = std::string(tmpdir) + "/profile.png";
    struct Cleanup {
        std::string file, dir;
        ~Cleanup() {
            unlink(file.c_str());
            rmdir(dir.c_str());
        }
    } cleanup{out_path, tmpdir};

    struct Run {
        std::map<std::string, double> wall;
        double total;
        std::vector<double> steps;
    };
    std::vector<Run> runs;
    int H = 0, W = 0;
    Recorder rec;
    ldmind_options o;
    ldmind_options_init(&o);
    o.steps = steps;
    o.sampler = sampler.c_str();
    o.progress = record_cb;
    o.user = &rec;
    for (int k = 0; k <= repeat; ++k) {                 // k = 0: warm-up, not counted
        const double start = now_s();
        Image lr;
        if (has_image) lr = ldmind_cli::load_image(image, PyPath(image).s);
        const double decode = now_s() - start;
        check_signal();
        if (has_image) {
            ldmind_status s = ldmind_output_size(pipe.p, lr.width, lr.height, scale, ow, oh, &H, &W);
            if (s != LDMIND_OK) library_failure(s);
        } else {
            W = ow;
            H = oh;
        }
        Buffer buf(static_cast<double>(H) * W * 3);
        rec.reset();
        if (has_image)
            run_call([&] { return ldmind_upscale(pipe.p, lr.rgb.data(), lr.width, lr.height, scale, ow, oh, &o, buf.get()); });
        else
            run_call([&] { return ldmind_generate(pipe.p, W, H, 0, 0, &o, buf.get()); });
        double t = now_s();
        {
            Image img;
            img.width = W;
            img.height = H;
            img.rgb.assign(buf.get(), buf.get() + static_cast<size_t>(H) * W * 3);
            FILE* f = std::fopen(out_path.c_str(), "wb");
            if (!f || !ldmind_cli::write_png(f, img)) {
                if (f) std::fclose(f);
                throw Fail{out_path + ": cannot write (" + std::strerror(errno) + ")"};
            }
            std::fclose(f);
        }
        const double write = now_s() - t;
        const double total = now_s() - start;
        Run r{rec.wall, total, rec.steps};
        r.wall["image decode"] = decode;
        r.wall["image encode+write"] = write;
        double sum = 0;
        for (const auto& [kk, v] : r.wall) sum += v;
        r.wall["other"] = std::max(0.0, total - sum);
        if (k) runs.push_back(r);
    }
    std::map<std::string, double> stages;
    for (const auto& s : STAGES) {
        std::vector<double> v;
        for (const auto& r : runs) v.push_back(r.wall.count(s) ? r.wall.at(s) : 0.0);
        stages[s] = median(v);
    }
    std::vector<double> totals, all_steps;
    for (const auto& r : runs) {
        totals.push_back(r.total);
        all_steps.insert(all_steps.end(), r.steps.begin(), r.steps.end());
    }
    const double total = median(totals);
    const double step_med = all_steps.empty() ? 0.0 : median(all_steps);
    const double step_p90 = all_steps.empty() ? 0.0 : percentile(all_steps, 90);
    const size_t count = all_steps.size() / std::max<size_t>(1, runs.size());
    const double liif = stages["LIIF queries"] / (static_cast<double>(H) * W / 1e6);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double peak = static_cast<double>(ru.ru_maxrss) * 1024.0;
    const std::string model = ldmind_model_name(pipe.p), used = ldmind_backend(pipe.p);

    // profile.table, line for line (no per-graph timer in the C API: the graph column is empty)
    std::vector<std::string> lines;
    lines.push_back(model + " on " + used + ": " + (has_image && !image.empty() ? image : "generate") + " -> " +
                    std::to_string(W) + "x" + std::to_string(H) + ", " + std::to_string(steps) + " steps (" + sampler +
                    "), median of " + std::to_string(repeat) + " after a warm-up");
    lines.push_back(fmtf("%-20s %10s %10s %6s", "stage", "wall ms", "graph ms", "share"));
    for (const auto& s : STAGES) {
        const double w = stages[s];
        lines.push_back(fmtf("%-20s %10.1f %10s %5.1f%%", s.c_str(), w * 1e3, "", total ? 100 * w / total : 0.0));
    }
    lines.push_back(fmtf("%-20s %10.1f", "total", total * 1e3));
    lines.push_back(fmtf("U-Net step: median %.1f ms, p90 %.1f ms (%zu per request)", step_med * 1e3, step_p90 * 1e3, count));
    lines.push_back(fmtf("LIIF queries: %.2f s per output megapixel", liif));
    lines.push_back(peak > 0 ? fmtf("peak RSS: %.0f MiB", peak / 1048576.0) : std::string("peak RSS: unknown"));
    std::string table;
    for (size_t k = 0; k < lines.size(); ++k) table += (k ? "\n" : "") + lines[k];
    say(table);

    if (has_json) {
        std::string j = "{\n";
        j += " \"engines\": " + json_str(engines) + ",\n";
        j += " \"model\": " + json_str(model) + ",\n";
        j += " \"backend\": " + json_str(used) + ",\n";
        j += " \"image\": " + (has_image ? json_str(image) : std::string("null")) + ",\n";
        j += " \"output\": [\n  " + std::to_string(W) + ",\n  " + std::to_string(H) + "\n ],\n";
        j += " \"steps\": " + std::to_string(steps) + ",\n";
        j += " \"sampler\": " + json_str(sampler) + ",\n";
        j += " \"repeat\": " + std::to_string(repeat) + ",\n";
        j += " \"stages_s\": {\n";
        for (size_t k = 0; k < STAGES.size(); ++k)
            j += "  " + json_str(STAGES[k]) + ": " + json_num(stages[STAGES[k]]) + (k + 1 < STAGES.size() ? ",\n" : "\n");
        j += " },\n";
        j += " \"total_s\": " + json_num(total) + ",\n";
        j += " \"graph_s\": {},\n";
        j += " \"unet_step_s\": {\n  \"median\": " + json_num(step_med) + ",\n  \"p90\": " + json_num(step_p90) +
             ",\n  \"count\": " + std::to_string(count) + "\n },\n";
        j += " \"liif_s_per_output_mpx\": " + json_num(liif) + ",\n";
        j += " \"peak_rss_bytes\": " + std::to_string(static_cast<long long>(peak)) + "\n}\n";
        const std::string tmp = json_path + ".tmp";
        FILE* f = std::fopen(tmp.c_str(), "wb");
        const bool ok = f && std::fputs(j.c_str(), f) >= 0 && std::fclose(f) == 0;
        if (!ok || std::rename(tmp.c_str(), json_path.c_str()) != 0) {
            const int err = errno;
            unlink(tmp.c_str());
            throw Fail{json_path + ": cannot write (" + std::strerror(err) + ")"};
        }
    }
    return 0;
}

// -- main -----------------------------------------------------------------------------------------
int run(int argc, char** argv) {
    std::vector<std::string> extras, rest;
    std::string command;
    bool have_command = false;
    Parser top;
    top.flag({"-h", "--help"}, "help");
    top.help = TOP_HELP;
    int i = 1;
    for (; i < argc; ++i) {
        std::string s = argv[i];
        if (s == "--") continue;
        if (top.is_option(s)) {
            Arg* a = top.exact(s);
            if (!a) {
                auto m = top.prefix_matches(s);
                if (m.size() == 1) a = m[0].arg;
            }
            if (a && a->dest == "help") {
                std::fputs(TOP_HELP, stdout);
                return 0;
            }
            extras.push_back(s);
            continue;
        }
        command = s;
        have_command = true;
        ++i;
        break;
    }
    if (!have_command) throw UsageFail{"the following arguments are required: command"};
    if (std::find(COMMANDS.begin(), COMMANDS.end(), command) == COMMANDS.end()) {
        std::string c;
        for (size_t k = 0; k < COMMANDS.size(); ++k) c += (k ? ", " : "") + py_repr(COMMANDS[k]);
        throw UsageFail{"argument command: invalid choice: " + py_repr(command) + " (choose from " + c + ")"};
    }
    if (command == "serve")
        throw Fail{"serve is not part of the C++ CLI; use python -m runtime serve, or embed the library (ldmind.h)"};
    for (; i < argc; ++i) rest.push_back(argv[i]);
    Parser p = make_parser(command);
    p.parse(rest, extras);
    if (!extras.empty()) {
        std::string e;
        for (size_t k = 0; k < extras.size(); ++k) e += (k ? " " : "") + extras[k];
        throw UsageFail{"unrecognized arguments: " + e};
    }
    if (command == "upscale") return cmd_upscale(p);
    if (command == "generate") return cmd_generate(p);
    if (command == "info") return cmd_info(p);
    return cmd_profile(p);
}

}  // namespace

int main(int argc, char** argv) {
    install_signals();
    signal(SIGPIPE, SIG_IGN);   // a reader gone away: the write fails and is ignored (say)
    std::string line;
    int code;
    try {
        code = run(argc, argv);
        if (g_signal) throw Stopped{g_signal};
        return code;
    } catch (const UsageFail& e) {
        line = std::string(PROG) + ": error: " + e.msg + " (see --help)";
        code = 2;
    } catch (const Fail& e) {
        line = std::string(PROG) + ": error: " + e.msg;
        code = 2;
    } catch (const ImageError& e) {
        line = std::string(PROG) + ": error: " + e.what();
        code = 2;
    } catch (const Stopped& e) {
        line = std::string(PROG) + (e.sig == SIGTERM ? ": terminated (SIGTERM)" : ": interrupted (SIGINT)");
        code = 128 + e.sig;
    } catch (const std::bad_alloc&) {
        line = std::string(PROG) + ": error: the machine ran out of memory; ask for a smaller output, fewer samples "
                                   "or a smaller input, or free memory";
        code = 2;
    } catch (const Internal& e) {
        line = std::string(PROG) + ": internal error: " + e.msg + " (set LDMIND_DEBUG=1 for the traceback)";
        code = 1;
    } catch (const std::exception& e) {
        line = std::string(PROG) + ": internal error: " + e.what() + " (set LDMIND_DEBUG=1 for the traceback)";
        code = 1;
    }
    if (g_tmp[0]) unlink(g_tmp);
    say(line, stderr);
    return code;
}
