// The ldmind CLI's signals and outputs: SIGINT/SIGTERM, the temporary output being written, the
// checks of an output path before any work (output_paths.check_output_path) and atomic image writes
// (image_out.save_image: a temporary in the output's folder, fsync, rename).
#pragma once
#include <csignal>
#include <cstdio>
#include <string>

#include "image_io.hpp"
#include "pytext.hpp"

namespace ldmind_cli {

// -- signals ------------------------------------------------------------------------------------
extern volatile sig_atomic_t g_signal;       // the first signal received
extern volatile sig_atomic_t g_cancellable;  // inside a library call that polls the progress callback
extern char g_tmp[4096];                     // the temporary output being written ("" if none)

void install_signals();
void check_signal();   // throws Stopped once a signal came

// -- output -------------------------------------------------------------------------------------
void say(const std::string& line, FILE* f = stdout);

bool is_dir(const std::string& p);
bool exists(const std::string& p);
bool same_file(const std::string& a, const std::string& b);

// output_paths.check_output_path
void check_output_path(const PyPath& p, const std::string& input, bool overwrite);

// image_out.save_image: encode into a temporary beside the output, fsync, rename
void save_image(const Image& img, const PyPath& p, int quality);

}  // namespace ldmind_cli
