// The argparse-alike of the ldmind CLI: argparse's option syntax (abbreviations, --flag=value,
// combined short flags, negative numbers as values), checks and messages (args.hpp).
#include "args.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "errors.hpp"
#include "pytext.hpp"

namespace ldmind_cli {

namespace {

bool negative_number(const std::string& s) {
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

}  // namespace

std::string Arg::name() const {
    if (flags.empty()) return dest;
    std::string n;
    for (size_t k = 0; k < flags.size(); ++k) n += (k ? "/" : "") + flags[k];
    return n;
}

Arg& Parser::add(std::vector<std::string> flags, const std::string& dest, Conv conv, int group) {
    Arg a;
    a.flags = std::move(flags);
    a.dest = dest;
    a.conv = std::move(conv);
    a.group = group;
    args.push_back(a);
    return args.back();
}
Arg& Parser::flag(std::vector<std::string> flags, const std::string& dest) {
    Arg& a = add(std::move(flags), dest);
    a.value = false;
    return a;
}
Arg& Parser::positional(const std::string& dest, bool optional) {
    Arg& a = add({}, dest);
    a.optional_pos = optional;
    return a;
}
int Parser::group(bool required) {
    group_required.push_back(required);
    return static_cast<int>(group_required.size()) - 1;
}
Arg* Parser::find(const std::string& dest) {
    for (auto& a : args)
        if (a.dest == dest) return &a;
    return nullptr;
}
bool Parser::has(const std::string& dest) { return find(dest)->seen; }
std::string Parser::get(const std::string& dest, const std::string& def) {
    Arg* a = find(dest);
    return a->seen ? a->val : def;
}
long long Parser::get_int(const std::string& dest, long long def) {
    Arg* a = find(dest);
    long long v = def;
    if (a->seen) py_int(a->val, &v);
    return v;
}
double Parser::get_number(const std::string& dest, double def) {
    Arg* a = find(dest);
    double v = def;
    if (a->seen) py_number(a->val, &v);
    return v;
}
void Parser::size(const std::string& dest, int* w, int* h) {
    std::string l = lower(get(dest));
    size_t x = l.find('x');
    long long a = 0, b = 0;
    py_int(l.substr(0, x), &a);
    py_int(l.substr(x + 1), &b);
    *w = static_cast<int>(std::min<long long>(a, 1 << 30));
    *h = static_cast<int>(std::min<long long>(b, 1 << 30));
}

Arg* Parser::exact(const std::string& opt) {
    for (auto& a : args)
        for (auto& f : a.flags)
            if (f == opt) return &a;
    return nullptr;
}
std::vector<Parser::Match> Parser::prefix_matches(const std::string& s) {
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
// argparse's _parse_optional: is this string an option (known or not)?
bool Parser::is_option(const std::string& s) {
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
[[noreturn]] void Parser::ambiguous(const std::string& s, const std::vector<Match>& m) {
    std::string opts;
    for (size_t k = 0; k < m.size(); ++k) opts += (k ? ", " : "") + m[k].opt;
    throw UsageFail{"ambiguous option: " + s + " could match " + opts};
}

void Parser::store(Arg& a, const std::string& v) {
    if (!a.choices.empty() && std::find(a.choices.begin(), a.choices.end(), v) == a.choices.end()) {
        std::string c;
        for (size_t k = 0; k < a.choices.size(); ++k) c += (k ? ", " : "") + py_str(a.choices[k]);
        throw UsageFail{"argument " + a.name() + ": invalid choice: " + py_str(v) + " (choose from " + c + ")"};
    }
    if (a.conv.check) {
        std::string m = a.conv.check(v);
        if (!m.empty()) throw UsageFail{"argument " + a.name() + ": " + m};
    }
    a.seen = true;
    a.val = v;
}
void Parser::conflict(Arg& a) {
    if (a.group < 0) return;
    for (auto& o : args)
        if (&o != &a && o.group == a.group && o.seen)
            throw UsageFail{"argument " + a.name() + ": not allowed with argument " + o.name()};
}

// parse argv (after the command); unknown strings go to extras
void Parser::parse(const std::vector<std::string>& argv, std::vector<std::string>& extras) {
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
                if (!b) throw UsageFail{"argument " + a->name() + ": ignored explicit argument " + py_str(explicit_val)};
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

}  // namespace ldmind_cli
