// Python's spellings for the ldmind CLI: paths as pathlib prints them, repr() of a str, and
// int()/float() of command-line text with Python's acceptance rules.
#pragma once
#include <string>

#include "pyfmt.hpp"

namespace ldmind_cli {

// str(pathlib.Path(p))
std::string py_path(const std::string& s);

struct PyPath {
    std::string s;   // normalised
    explicit PyPath(const std::string& p) : s(py_path(p)) {}
    std::string name() const;
    std::string parent() const;
    std::string suffix() const;
    std::string stem() const;
    PyPath with_name(const std::string& n) const;
};

std::string lower(std::string s);

// runtime/console.py one_line: `text` (bytes, read as Python reads file names: UTF-8, each
// undecodable byte as the lone surrogate U+DC00 + byte) with every character that is not
// printable for Python (str.isprintable: controls, format characters, separators other than
// the space, unassigned code points, surrogates; table in printable.hpp, generated from
// Python) written as Python writes it in a string literal: \n, \x1b, \xa0, \u200b, \udcff.
// Every line the CLI prints that carries a name (a path, a model name) goes through here, so
// a name can neither split a line in two nor send terminal escapes.
std::string one_line(const std::string& text);

using ldmind::text::py_float;   // Python's repr of a float (src/pyfmt.hpp)
using ldmind::text::py_str;     // Python's repr of a str (src/pyfmt.hpp)

// int(text); false when Python would raise ValueError
bool py_int(const std::string& text, long long* v);

// float(text); false when Python would raise ValueError
bool py_number(const std::string& text, double* v);

}  // namespace ldmind_cli
