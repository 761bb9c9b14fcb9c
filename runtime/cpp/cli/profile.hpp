// `ldmind profile` (profile.cpp): runtime/profile.py's per-stage latency table over the C API.
#pragma once
#include "args.hpp"

namespace ldmind_cli {

int cmd_profile(Parser& p);

}  // namespace ldmind_cli
