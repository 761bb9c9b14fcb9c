// Python's spellings for the ldmind CLI (pytext.hpp).
#include "pytext.hpp"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "printable.hpp"

namespace ldmind_cli {

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

std::string PyPath::name() const {
    size_t k = s.rfind('/');
    std::string n = k == std::string::npos ? s : s.substr(k + 1);
    return n == "." ? "" : n;
}
std::string PyPath::parent() const {
    size_t k = s.rfind('/');
    if (k == std::string::npos) return ".";
    if (k == 0) return "/";
    if (k == 1 && s[0] == '/' && s.size() > 1 && s[1] == '/') return "//";
    return s.substr(0, k);
}
std::string PyPath::suffix() const {
    std::string n = name();
    size_t i = n.rfind('.');
    return (i != std::string::npos && i > 0 && i < n.size() - 1) ? n.substr(i) : "";
}
std::string PyPath::stem() const {
    std::string n = name(), suf = suffix();
    return n.substr(0, n.size() - suf.size());
}
PyPath PyPath::with_name(const std::string& n) const {
    std::string par = parent();
    return PyPath(par == "." ? n : par + "/" + n);
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

namespace {

bool printable(char32_t c) {
    size_t lo = 0, hi = sizeof NONPRINTABLE / sizeof NONPRINTABLE[0];   // the first range ending at or after c
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (NONPRINTABLE[mid][1] < c) lo = mid + 1;
        else hi = mid;
    }
    return lo == sizeof NONPRINTABLE / sizeof NONPRINTABLE[0] || c < NONPRINTABLE[lo][0];
}

// the length of the well-formed UTF-8 sequence at s[i] (Unicode table 3-7, as Python's strict
// decoder), and its code point; 0 when s[i] starts none
size_t utf8_at(const std::string& s, size_t i, char32_t* cp) {
    const auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
    const unsigned c0 = b(0);
    if (c0 < 0x80) {
        *cp = c0;
        return 1;
    }
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;   // the second byte's range
    if (c0 >= 0xC2 && c0 <= 0xDF) n = 2;
    else if (c0 >= 0xE0 && c0 <= 0xEF) {
        n = 3;
        if (c0 == 0xE0) lo = 0xA0;
        if (c0 == 0xED) hi = 0x9F;   // no surrogates
    } else if (c0 >= 0xF0 && c0 <= 0xF4) {
        n = 4;
        if (c0 == 0xF0) lo = 0x90;
        if (c0 == 0xF4) hi = 0x8F;
    } else return 0;
    if (b(1) < lo || b(1) > hi) return 0;
    for (size_t k = 2; k < n; ++k)
        if (b(k) < 0x80 || b(k) > 0xBF) return 0;
    char32_t v = c0 & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) v = (v << 6) | (b(k) & 0x3F);
    *cp = v;
    return n;
}

}  // namespace

std::string one_line(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        char32_t c = 0;
        size_t n = utf8_at(text, i, &c);
        if (n == 0) {                                   // an undecodable byte: its surrogate escape
            c = 0xDC00 + static_cast<unsigned char>(text[i]);
            n = 1;
        } else if (printable(c)) {
            out.append(text, i, n);
            i += n;
            continue;
        }
        char b[16];
        if (c == '\n') std::snprintf(b, sizeof b, "\\n");
        else if (c == '\r') std::snprintf(b, sizeof b, "\\r");
        else if (c == '\t') std::snprintf(b, sizeof b, "\\t");
        else if (c < 0x100) std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned>(c));
        else if (c < 0x10000) std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(c));
        else std::snprintf(b, sizeof b, "\\U%08x", static_cast<unsigned>(c));
        out += b;
        i += n;
    }
    return out;
}

namespace {

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

}  // namespace

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

}  // namespace ldmind_cli
