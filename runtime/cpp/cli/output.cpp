// The ldmind CLI's signals and outputs (output.hpp).
#include "output.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "errors.hpp"

namespace ldmind_cli {

// -- signals ------------------------------------------------------------------------------------
volatile sig_atomic_t g_signal = 0;        // the first signal received
volatile sig_atomic_t g_cancellable = 0;   // inside a library call that polls the progress callback
char g_tmp[4096] = {0};                    // the temporary output being written ("" if none)

namespace {

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

}  // namespace

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

// -- output -------------------------------------------------------------------------------------
void say(const std::string& line, FILE* f) {
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

namespace {

const std::vector<std::string> PYTHON_EXTENSIONS{".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"};

}  // namespace

// output_paths.check_output_path
void check_output_path(const PyPath& p, const std::string& input, bool overwrite) {
    const std::string ext = lower(p.suffix());
    if (std::find(PYTHON_EXTENSIONS.begin(), PYTHON_EXTENSIONS.end(), ext) == PYTHON_EXTENSIONS.end())
        throw Fail{p.s + ": cannot tell the output format from the extension " + py_str(ext.empty() ? "(none)" : ext) +
                   "; use .png, .jpg, .jpeg, .webp, .tif, .tiff, .bmp"};   // Python's text (output_paths.output_format)
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

namespace {

bool pid_alive(long pid) {
    if (pid <= 0) return true;
    return kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

// output_paths.remove_stale_temporaries: ".ldmind-<pid>-<8 hex>.tmp" of dead processes
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

}  // namespace

// image_out.save_image: encode into a temporary beside the output, fsync, rename
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

}  // namespace ldmind_cli
