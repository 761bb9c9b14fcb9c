// Image files for the ldmind CLI: which codec reads a file (png.cpp, jpeg.cpp), and what both
// share: the EXIF orientation and the opaque-alpha rule.  The messages: image_messages.cpp.
#include "image_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "codecs.hpp"
#include "image_messages.hpp"

namespace ldmind_cli {

int exif_orientation(const uint8_t* p, size_t n) {
    if (n < 8) return 0;
    bool le;
    if (p[0] == 'I' && p[1] == 'I') le = true;
    else if (p[0] == 'M' && p[1] == 'M') le = false;
    else return 0;
    auto u16 = [&](size_t o) -> uint32_t { return le ? (p[o] | (p[o + 1] << 8)) : ((p[o] << 8) | p[o + 1]); };
    auto u32 = [&](size_t o) -> uint32_t { return le ? (u16(o) | (u16(o + 2) << 16)) : ((u16(o) << 16) | u16(o + 2)); };
    if (u16(2) != 42) return 0;
    size_t ifd = u32(4);
    if (ifd + 2 > n) return 0;
    size_t count = u16(ifd);
    for (size_t i = 0; i < count; ++i) {
        size_t e = ifd + 2 + 12 * i;
        if (e + 12 > n) break;
        if (u16(e) != 0x0112) continue;
        uint32_t type = u16(e + 2);
        if (type == 3) return static_cast<int>(u16(e + 8));
        if (type == 4) return static_cast<int>(u32(e + 8));
        return 0;
    }
    return 0;
}

// 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE,
// 8 ROTATE_90 (Pillow's names: ROTATE_n is counter-clockwise)
void orient(Image& img, int orientation) {
    if (orientation < 2 || orientation > 8) return;
    const int w = img.width, h = img.height;
    const bool swap = orientation >= 5;
    const int W = swap ? h : w, H = swap ? w : h;
    std::vector<uint8_t> out(img.rgb.size());
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            int sx = x, sy = y;
            switch (orientation) {
                case 2: sx = w - 1 - x; sy = y; break;
                case 3: sx = w - 1 - x; sy = h - 1 - y; break;
                case 4: sx = x; sy = h - 1 - y; break;
                case 5: sx = y; sy = x; break;
                case 6: sx = y; sy = h - 1 - x; break;
                case 7: sx = w - 1 - y; sy = h - 1 - x; break;
                case 8: sx = w - 1 - y; sy = x; break;
            }
            std::memcpy(&out[(static_cast<size_t>(y) * W + x) * 3], &img.rgb[(static_cast<size_t>(sy) * w + sx) * 3], 3);
        }
    img.rgb.swap(out);
    img.width = W;
    img.height = H;
}

void drop_opaque_alpha(Image& img, const std::vector<uint8_t>& rgba, const std::string& name) {
    const size_t n = static_cast<size_t>(img.width) * img.height;
    for (size_t i = 0; i < n; ++i)
        if (rgba[i * 4 + 3] != 255) refuse(msg::translucent(name));
    img.rgb.resize(n * 3);
    for (size_t i = 0; i < n; ++i) std::memcpy(&img.rgb[i * 3], &rgba[i * 4], 3);
}

namespace {

// formats Pillow reads that this CLI does not: named in the refusal
const char* other_format(const std::vector<uint8_t>& d) {
    auto starts = [&](const char* s, size_t at = 0) {
        size_t n = std::strlen(s);
        return d.size() >= at + n && std::memcmp(d.data() + at, s, n) == 0;
    };
    if (starts("GIF87a") || starts("GIF89a")) return "GIF";
    if (starts("RIFF") && starts("WEBP", 8)) return "WebP";
    if (starts("II*") || starts("MM")) {
        if (d.size() >= 4 && ((d[0] == 'I' && d[2] == 42 && d[3] == 0) || (d[0] == 'M' && d[2] == 0 && d[3] == 42)))
            return "TIFF";
    }
    if (starts("BM") && d.size() >= 26) return "BMP";
    return nullptr;
}

}  // namespace

Image decode_image(const std::vector<uint8_t>& data, const std::string& name) {
    if (data.empty()) refuse(msg::empty_file(name));
    if (is_png(data)) return decode_png(data, name);
    if (is_jpeg(data)) return decode_jpeg(data, name);
    if (const char* f = other_format(data)) refuse(msg::other_format(name, f));
    refuse(msg::unrecognised(name));
}

namespace {

// Python's image_in._kind: the contract's FILE_KINDS key of a file that is not regular
const char* file_kind(mode_t m) {
    if (S_ISFIFO(m)) return "fifo";
    if (S_ISCHR(m)) return "char";
    if (S_ISBLK(m)) return "block";
    if (S_ISSOCK(m)) return "socket";
    return "other";
}

// Python's image_in._check_regular
void check_regular(const struct stat& st, const std::string& name) {
    if (S_ISDIR(st.st_mode)) refuse(msg::is_directory(name));
    if (!S_ISREG(st.st_mode)) refuse(msg::not_a_regular_file(name, file_kind(st.st_mode)));
}

}  // namespace

// Python's image_in.read_input_file: only a regular file (after symlinks), checked before a byte
// is read; opened without blocking, checked again, read no further than its size then
Image load_image(const std::string& path, const std::string& name) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) refuse(msg::no_such_file(name));
        refuse(msg::cannot_read(name, errno));
    }
    check_regular(st, name);
    const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) refuse(msg::cannot_read(name, errno));
    std::vector<uint8_t> data;
    int err = 0;
    if (fstat(fd, &st) != 0) err = errno;
    else if (!S_ISREG(st.st_mode)) {
        close(fd);
        check_regular(st, name);
    } else {
        data.resize(static_cast<size_t>(st.st_size));
        size_t have = 0;
        while (have < data.size()) {
            const ssize_t got = read(fd, data.data() + have, data.size() - have);
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) { err = errno; break; }
            if (got == 0) break;
            have += static_cast<size_t>(got);
        }
        data.resize(have);
    }
    close(fd);
    if (err) refuse(msg::cannot_read(name, err));
    return decode_image(data, name);
}

}  // namespace ldmind_cli
