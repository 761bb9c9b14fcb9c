#include "json.hpp"

#include <cerrno>
#include <cstdlib>
#include <cctype>
#include <limits>

namespace ldmind::json {

const Value* Value::find(const std::string& key) const {
    if (kind != Object) return nullptr;
    for (const auto& kv : obj)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

namespace {

constexpr int MAX_DEPTH = 256;

struct Parser {
    const std::string& s;
    size_t p = 0;

    [[noreturn]] void fail(const std::string& what) const {
        throw JsonError(what + " at offset " + std::to_string(p));
    }
    void ws() {
        while (p < s.size() && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) ++p;
    }
    bool lit(const char* t) {
        size_t n = std::char_traits<char>::length(t);
        if (s.compare(p, n, t) == 0) { p += n; return true; }
        return false;
    }
    static void utf8(std::string& out, uint32_t c) {
        if (c < 0x80) out += char(c);
        else if (c < 0x800) { out += char(0xC0 | (c >> 6)); out += char(0x80 | (c & 0x3F)); }
        else if (c < 0x10000) { out += char(0xE0 | (c >> 12)); out += char(0x80 | ((c >> 6) & 0x3F)); out += char(0x80 | (c & 0x3F)); }
        else { out += char(0xF0 | (c >> 18)); out += char(0x80 | ((c >> 12) & 0x3F)); out += char(0x80 | ((c >> 6) & 0x3F)); out += char(0x80 | (c & 0x3F)); }
    }
    uint32_t hex4() {
        if (p + 4 > s.size()) fail("truncated \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            char c = s[p++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
            else fail("bad \\u escape");
        }
        return v;
    }
    std::string string() {
        if (p >= s.size() || s[p] != '"') fail("expected a string");
        ++p;
        std::string out;
        while (true) {
            if (p >= s.size()) fail("unterminated string");
            char c = s[p++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') { out += c; continue; }
            if (p >= s.size()) fail("unterminated escape");
            char e = s[p++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t c1 = hex4();
                    if (c1 >= 0xD800 && c1 < 0xDC00 && s.compare(p, 2, "\\u") == 0) {
                        p += 2;
                        uint32_t c2 = hex4();
                        if (c2 >= 0xDC00 && c2 < 0xE000) c1 = 0x10000 + ((c1 - 0xD800) << 10) + (c2 - 0xDC00);
                        else { utf8(out, c1); c1 = c2; }
                    }
                    utf8(out, c1);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }
    Value number() {
        size_t start = p;
        bool integral = true;
        if (s[p] == '-') ++p;
        if (p >= s.size() || !isdigit(static_cast<unsigned char>(s[p]))) fail("bad number");
        while (p < s.size() && isdigit(static_cast<unsigned char>(s[p]))) ++p;
        if (p < s.size() && s[p] == '.') {
            integral = false;
            ++p;
            if (p >= s.size() || !isdigit(static_cast<unsigned char>(s[p]))) fail("bad number");
            while (p < s.size() && isdigit(static_cast<unsigned char>(s[p]))) ++p;
        }
        if (p < s.size() && (s[p] == 'e' || s[p] == 'E')) {
            integral = false;
            ++p;
            if (p < s.size() && (s[p] == '+' || s[p] == '-')) ++p;
            if (p >= s.size() || !isdigit(static_cast<unsigned char>(s[p]))) fail("bad number");
            while (p < s.size() && isdigit(static_cast<unsigned char>(s[p]))) ++p;
        }
        std::string text = s.substr(start, p - start);
        Value v;
        v.kind = Value::Number;
        v.num = std::strtod(text.c_str(), nullptr);    // correctly rounded, as Python's float()
        if (integral) {
            errno = 0;
            long long iv = std::strtoll(text.c_str(), nullptr, 10);
            if (errno == 0) { v.integral = true; v.i = iv; }
        }
        return v;
    }
    Value value(int depth) {
        if (depth > MAX_DEPTH) fail("nested too deeply");
        ws();
        if (p >= s.size()) fail("unexpected end");
        Value v;
        char c = s[p];
        if (c == '{') {
            ++p;
            v.kind = Value::Object;
            ws();
            if (p < s.size() && s[p] == '}') { ++p; return v; }
            while (true) {
                ws();
                std::string k = string();
                ws();
                if (p >= s.size() || s[p] != ':') fail("expected ':'");
                ++p;
                Value item = value(depth + 1);
                bool replaced = false;
                for (auto& kv : v.obj)          // a repeated key keeps the last value, as Python's json
                    if (kv.first == k) { kv.second = std::move(item); replaced = true; break; }
                if (!replaced) v.obj.emplace_back(std::move(k), std::move(item));
                ws();
                if (p < s.size() && s[p] == ',') { ++p; continue; }
                if (p < s.size() && s[p] == '}') { ++p; return v; }
                fail("expected ',' or '}'");
            }
        }
        if (c == '[') {
            ++p;
            v.kind = Value::Array;
            ws();
            if (p < s.size() && s[p] == ']') { ++p; return v; }
            while (true) {
                v.arr.push_back(value(depth + 1));
                ws();
                if (p < s.size() && s[p] == ',') { ++p; continue; }
                if (p < s.size() && s[p] == ']') { ++p; return v; }
                fail("expected ',' or ']'");
            }
        }
        if (c == '"') { v.kind = Value::String; v.str = string(); return v; }
        if (lit("true")) { v.kind = Value::Bool; v.b = true; return v; }
        if (lit("false")) { v.kind = Value::Bool; return v; }
        if (lit("null")) return v;
        if (lit("NaN")) { v.kind = Value::Number; v.num = std::numeric_limits<double>::quiet_NaN(); return v; }
        if (lit("Infinity")) { v.kind = Value::Number; v.num = std::numeric_limits<double>::infinity(); return v; }
        if (lit("-Infinity")) { v.kind = Value::Number; v.num = -std::numeric_limits<double>::infinity(); return v; }
        if (c == '-' || isdigit(static_cast<unsigned char>(c))) return number();
        fail("unexpected character");
    }
};

}  // namespace

Value parse(const std::string& text) {
    Parser ps{text};
    Value v = ps.value(0);
    ps.ws();
    if (ps.p != text.size()) ps.fail("extra data");
    return v;
}

}  // namespace ldmind::json
