// A small JSON reader for the engine manifest (RFC 8259 values; numbers kept as double and,
// when integral in the text, as int64).  Errors throw JsonError with a byte offset.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ldmind::json {

struct JsonError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Value {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool b = false;
    double num = 0;
    bool integral = false;       // the number was written without fraction or exponent
    int64_t i = 0;
    std::string str;
    std::vector<Value> arr;
    std::vector<std::pair<std::string, Value>> obj;   // insertion order

    const Value* find(const std::string& key) const;   // nullptr when absent (or not an object)
    bool is_int() const { return kind == Number && integral; }
};

Value parse(const std::string& text);

}  // namespace ldmind::json
