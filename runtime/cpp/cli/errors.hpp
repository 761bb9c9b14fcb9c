// The ldmind CLI's failures: each becomes one line on stderr and an exit status (main.cpp).
#pragma once
#include <string>

namespace ldmind_cli {

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

}  // namespace ldmind_cli
