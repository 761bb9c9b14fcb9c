// The ldmind CLI's command line: an argparse-alike (args.cpp) with argparse's rules and messages,
// and the commands configured on it as runtime/cli.py configures them (flags.cpp).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "contract.hpp"

namespace ldmind_cli {

namespace contract = ldmind::contract;   // defaults, limits and messages (src/contract.hpp, generated)

// -- argparse (args.cpp) ------------------------------------------------------------------------
struct Conv {                 // checks a value; returns "" or argparse's type-error message
    std::function<std::string(const std::string&)> check;
};

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
    std::string name() const;
};

struct Parser {
    std::string command;
    std::vector<Arg> args;
    std::vector<bool> group_required;
    std::string help;

    Arg& add(std::vector<std::string> flags, const std::string& dest, Conv conv = {}, int group = -1);
    Arg& flag(std::vector<std::string> flags, const std::string& dest);
    Arg& positional(const std::string& dest, bool optional = false);
    int group(bool required);
    Arg* find(const std::string& dest);
    bool has(const std::string& dest);
    std::string get(const std::string& dest, const std::string& def = "");
    long long get_int(const std::string& dest, long long def);
    double get_number(const std::string& dest, double def);
    void size(const std::string& dest, int* w, int* h);

    // (arg, option string, explicit value or none) for an option-like string (argparse's
    // _get_option_tuples, with its abbreviations)
    struct Match {
        Arg* arg;
        std::string opt;
        bool has_explicit;
        std::string explicit_val;
    };
    Arg* exact(const std::string& opt);
    std::vector<Match> prefix_matches(const std::string& s);
    // argparse's _parse_optional: is this string an option (known or not)?
    bool is_option(const std::string& s);
    [[noreturn]] void ambiguous(const std::string& s, const std::vector<Match>& m);

    void store(Arg& a, const std::string& v);
    void conflict(Arg& a);

    // parse argv (after the command); unknown strings go to extras
    void parse(const std::vector<std::string>& argv, std::vector<std::string>& extras);
};

// -- the commands, as runtime/cli.py configures them (flags.cpp) ----------------------------------
extern const std::vector<std::string> COMMANDS;
extern const char* const TOP_HELP;

Parser make_parser(const std::string& cmd);

}  // namespace ldmind_cli
