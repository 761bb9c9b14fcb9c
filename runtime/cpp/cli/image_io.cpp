// PNG and JPEG through libpng and libjpeg, with runtime/io.py's rules and messages.
//
// Messages follow Pillow's behaviour as io.decode_image reports it: a PNG whose chunks before
// the image data are cut short or fail their checksum is "not a recognised image file"; a chunk
// whose data is cut short is "truncated or corrupt image file (Truncated File Read)"; image
// data cut short is "truncated or corrupt image file (image file is truncated)"; a PNG without
// its IEND chunk is read.  A JPEG cut short is "(Truncated File Read)" unless only its end
// marker is missing (io._jpeg_without_eoi's test: decoded with the marker closed and with
// filler bytes before it, the same pixels).
#include "image_io.hpp"

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstring>
#include <fstream>

namespace ldmind_cli {

namespace {

[[noreturn]] void refuse(const std::string& m) { throw ImageError(m); }

std::string unrecognised(const std::string& name) {
    return name + ": not a recognised image file (corrupt, or not an image)";
}
std::string corrupt(const std::string& name, const std::string& why) {
    return name + ": truncated or corrupt image file (" + why + ")";
}
std::string bomb(const std::string& name) {
    return name + ": refused as a possible decompression bomb (its header declares more than " +
           std::to_string(static_cast<long long>((MAX_INPUT_PIXELS + 500000) / 1000000)) + " Mpx)";
}
std::string translucent(const std::string& name) {
    return name + ": image has transparent pixels; the C++ CLI accepts only opaque images "
                  "(python -m runtime upscale keeps transparency)";
}

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

// -- EXIF orientation (Pillow's ImageOps.exif_transpose) ---------------------------------------
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

// RGBA rows -> RGB when the alpha is 255 everywhere, else refused
void drop_opaque_alpha(Image& img, const std::vector<uint8_t>& rgba, const std::string& name) {
    const size_t n = static_cast<size_t>(img.width) * img.height;
    for (size_t i = 0; i < n; ++i)
        if (rgba[i * 4 + 3] != 255) refuse(translucent(name));
    img.rgb.resize(n * 3);
    for (size_t i = 0; i < n; ++i) std::memcpy(&img.rgb[i * 3], &rgba[i * 4], 3);
}

// -- PNG -----------------------------------------------------------------------------------------
const uint8_t PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

bool is_cid(const uint8_t* c) {
    for (int k = 0; k < 4; ++k)
        if (!(std::isalnum(c[k]) || c[k] == '_')) return false;
    return true;
}

// What Pillow's PngImageFile._open checks before the image data: each chunk's header, data and
// CRC up to the first IDAT.  Returns the IHDR size.
void png_open_check(const std::vector<uint8_t>& d, const std::string& name, uint32_t* w, uint32_t* h) {
    size_t pos = 8, n = d.size();
    bool ihdr = false;
    for (;;) {
        if (pos + 8 > n) refuse(unrecognised(name));
        const uint32_t len = be32(&d[pos]);
        const uint8_t* cid = &d[pos + 4];
        if (!is_cid(cid)) refuse(unrecognised(name));
        if (std::memcmp(cid, "IDAT", 4) == 0) break;
        if (std::memcmp(cid, "IEND", 4) == 0) refuse(corrupt(name, "image file is truncated"));
        if (static_cast<uint64_t>(pos) + 8 + len > n) refuse(corrupt(name, "Truncated File Read"));
        if (static_cast<uint64_t>(pos) + 12 + len > n) refuse(unrecognised(name));
        const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0, cid, 4), &d[pos + 8], len));
        if (crc != be32(&d[pos + 8 + len])) refuse(unrecognised(name));
        if (std::memcmp(cid, "IHDR", 4) == 0 && len >= 8) {
            *w = be32(&d[pos + 8]);
            *h = be32(&d[pos + 12]);
            ihdr = true;
        }
        pos += 12 + static_cast<size_t>(len);
    }
    if (!ihdr) refuse(unrecognised(name));
}

struct PngReader {
    const std::vector<uint8_t>* d;
    size_t pos;
    bool eof;
    char msg[256];
};

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    PngReader* r = static_cast<PngReader*>(png_get_io_ptr(png));
    if (r->pos + n > r->d->size()) {
        r->eof = true;
        png_error(png, "read past the end of the file");
    }
    std::memcpy(out, r->d->data() + r->pos, n);
    r->pos += n;
}

void png_fail(png_structp png, png_const_charp m) {
    PngReader* r = static_cast<PngReader*>(png_get_error_ptr(png));
    std::snprintf(r->msg, sizeof r->msg, "%s", m);
    png_longjmp(png, 1);
}
void png_warn(png_structp, png_const_charp) {}

Image decode_png(const std::vector<uint8_t>& d, const std::string& name) {
    uint32_t w0 = 0, h0 = 0;
    png_open_check(d, name, &w0, &h0);
    if (static_cast<uint64_t>(w0) * h0 > static_cast<uint64_t>(MAX_INPUT_PIXELS)) refuse(bomb(name));
    PngReader r{&d, 0, false, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, png_fail, png_warn);
    if (!png) throw std::bad_alloc();
    png_infop info = png_create_info_struct(png);
    Image img;
    std::vector<uint8_t> buf;
    std::vector<png_bytep> rows;
    std::string error;
    bool sixteen = false;
    int channels = 0;
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_set_read_fn(png, &r, png_read_mem);
        png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);   // Pillow does not check IDAT CRCs
        png_read_info(png, info);
        const int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
        if (depth == 16) {
            sixteen = true;
        } else {
            if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);   // tRNS -> alpha
            if ((type & PNG_COLOR_MASK_COLOR) == 0) {
                if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
                png_set_gray_to_rgb(png);
            }
            png_set_interlace_handling(png);
            png_read_update_info(png, info);
            img.width = static_cast<int>(png_get_image_width(png, info));
            img.height = static_cast<int>(png_get_image_height(png, info));
            channels = png_get_channels(png, info);
            const size_t stride = png_get_rowbytes(png, info);
            buf.resize(stride * static_cast<size_t>(img.height));
            rows.resize(static_cast<size_t>(img.height));
            for (int y = 0; y < img.height; ++y) rows[static_cast<size_t>(y)] = buf.data() + stride * static_cast<size_t>(y);
            png_read_image(png, rows.data());
            // no png_read_end: a file without its IEND chunk is read, as Pillow does
        }
    } else {
        error = r.eof ? "image file is truncated" : r.msg;
    }
    int orientation = 0;
#ifdef PNG_eXIf_SUPPORTED
    if (error.empty() && !sixteen) {
        png_bytep exif = nullptr;
        png_uint_32 n = 0;
        if (png_get_eXIf_1(png, info, &n, &exif) && exif) orientation = exif_orientation(exif, n);
    }
#endif
    png_destroy_read_struct(&png, &info, nullptr);
    if (sixteen)
        refuse(name + ": 16-bit PNG; the C++ CLI reads 8-bit images only (python -m runtime upscale keeps 16 bits)");
    if (!error.empty()) refuse(corrupt(name, error));
    if (img.width < 1 || img.height < 1)
        refuse(name + ": empty image (" + std::to_string(img.width) + "x" + std::to_string(img.height) + ")");
    if (channels == 4) drop_opaque_alpha(img, buf, name);
    else if (channels == 3) img.rgb.swap(buf);
    else refuse(name + ": unsupported PNG layout (" + std::to_string(channels) + " channels)");
    orient(img, orientation);
    return img;
}

// -- JPEG ----------------------------------------------------------------------------------------
struct JpegError {
    jpeg_error_mgr pub;
    jmp_buf jb;
    bool eof = false;
    char msg[JMSG_LENGTH_MAX] = {0};
};

void jpeg_fail(j_common_ptr c) {
    JpegError* e = reinterpret_cast<JpegError*>(c->err);
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}
void jpeg_note(j_common_ptr c, int level) {
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) reinterpret_cast<JpegError*>(c->err)->eof = true;
}

enum class JpegResult { ok, eof, cmyk, bomb, failed };

// One decode; *why: the library's message on failure
JpegResult jpeg_once(const std::vector<uint8_t>& d, Image& img, int* orientation, std::string* why) {
    jpeg_decompress_struct c;
    JpegError e;
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_fail;
    e.pub.emit_message = jpeg_note;
    JpegResult result = JpegResult::ok;
    jpeg_create_decompress(&c);
    if (setjmp(e.jb) == 0) {
        jpeg_mem_src(&c, d.data(), static_cast<unsigned long>(d.size()));
        jpeg_save_markers(&c, JPEG_APP0 + 1, 0xffff);
        jpeg_read_header(&c, TRUE);
        if (c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK) {
            result = JpegResult::cmyk;
        } else if (static_cast<int64_t>(c.image_width) * c.image_height > MAX_INPUT_PIXELS) {
            result = JpegResult::bomb;
        } else {
            for (jpeg_saved_marker_ptr m = c.marker_list; m; m = m->next)
                if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {
                    *orientation = exif_orientation(m->data + 6, m->data_length - 6);
                    break;
                }
            c.out_color_space = JCS_RGB;
            jpeg_start_decompress(&c);
            img.width = static_cast<int>(c.output_width);
            img.height = static_cast<int>(c.output_height);
            img.rgb.assign(static_cast<size_t>(img.width) * img.height * 3, 0);
            while (c.output_scanline < c.output_height) {
                JSAMPROW row = &img.rgb[static_cast<size_t>(c.output_scanline) * img.width * 3];
                jpeg_read_scanlines(&c, &row, 1);
            }
            jpeg_finish_decompress(&c);
            if (e.eof) result = JpegResult::eof;
        }
    } else {
        *why = e.msg;
        result = e.eof ? JpegResult::eof : JpegResult::failed;
    }
    jpeg_destroy_decompress(&c);
    return result;
}

Image decode_jpeg(const std::vector<uint8_t>& d, const std::string& name) {
    Image img;
    int orientation = 0;
    std::string why;
    JpegResult r = jpeg_once(d, img, &orientation, &why);
    if (r == JpegResult::eof) {
        // io._jpeg_without_eoi: read when only the end marker is missing
        const size_t n = d.size();
        bool ok = false;
        if (!(n >= 2 && d[n - 2] == 0xff && d[n - 1] == 0xd9)) {
            std::vector<uint8_t> body(d.begin(), d.end() - ((n && d[n - 1] == 0xff) ? 1 : 0));
            std::vector<uint8_t> closed = body, padded = body;
            closed.push_back(0xff);
            closed.push_back(0xd9);
            padded.insert(padded.end(), 256, 0x55);
            padded.push_back(0xff);
            padded.push_back(0xd9);
            Image a, b;
            int oa = 0, ob = 0;
            std::string wa, wb;
            JpegResult ra = jpeg_once(closed, a, &oa, &wa), rb = jpeg_once(padded, b, &ob, &wb);
            if (ra == JpegResult::ok && rb == JpegResult::ok && a.width == b.width && a.height == b.height &&
                a.rgb == b.rgb) {
                img = std::move(a);
                orientation = oa;
                ok = true;
            }
        }
        if (!ok) refuse(corrupt(name, "Truncated File Read"));
        r = JpegResult::ok;
    }
    if (r == JpegResult::cmyk)
        refuse(name + ": CMYK JPEG; the C++ CLI reads RGB and greyscale JPEGs only (python -m runtime converts CMYK)");
    if (r == JpegResult::bomb) refuse(bomb(name));
    if (r == JpegResult::failed) refuse(corrupt(name, why));
    if (img.width < 1 || img.height < 1)
        refuse(name + ": empty image (" + std::to_string(img.width) + "x" + std::to_string(img.height) + ")");
    orient(img, orientation);
    return img;
}

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
    if (data.empty()) refuse(name + ": empty file (0 bytes), not an image");
    if (data.size() >= 8 && std::memcmp(data.data(), PNG_SIG, 8) == 0) return decode_png(data, name);
    if (data.size() >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return decode_jpeg(data, name);
    if (const char* f = other_format(data))
        refuse(name + ": a " + f + " image; the C++ CLI reads PNG and JPEG only (python -m runtime reads " + f +
               ")");
    refuse(unrecognised(name));
}

Image load_image(const std::string& path, const std::string& name) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) refuse(name + ": no such file");
        refuse(name + ": cannot read (" + std::strerror(errno) + ")");
    }
    if (S_ISDIR(st.st_mode)) refuse(name + ": is a directory, not an image file");
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) refuse(name + ": cannot read (" + std::strerror(errno) + ")");
    std::vector<uint8_t> data;
    uint8_t chunk[1 << 16];
    size_t got;
    while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) data.insert(data.end(), chunk, chunk + got);
    const bool bad = std::ferror(f) != 0;
    const int err = errno;
    std::fclose(f);
    if (bad) refuse(name + ": cannot read (" + std::strerror(err) + ")");
    return decode_image(data, name);
}

// -- output ------------------------------------------------------------------------------------
namespace {
struct PngWriter {
    char msg[256];
};
void png_wfail(png_structp png, png_const_charp m) {
    PngWriter* w = static_cast<PngWriter*>(png_get_error_ptr(png));
    std::snprintf(w->msg, sizeof w->msg, "%s", m);
    png_longjmp(png, 1);
}
}  // namespace

bool write_png(FILE* f, const Image& img) {
    PngWriter w{{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w, png_wfail, png_warn);
    if (!png) return false;
    png_infop info = png_create_info_struct(png);
    bool ok = false;
    std::vector<png_bytep> rows(static_cast<size_t>(img.height));
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, f);
        png_set_IHDR(png, info, static_cast<png_uint_32>(img.width), static_cast<png_uint_32>(img.height), 8,
                     PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < img.height; ++y)
            rows[static_cast<size_t>(y)] = const_cast<png_bytep>(&img.rgb[static_cast<size_t>(y) * img.width * 3]);
        png_write_image(png, rows.data());
        png_write_end(png, info);
        ok = true;
    }
    png_destroy_write_struct(&png, &info);
    return ok && std::fflush(f) == 0 && !std::ferror(f);
}

namespace {
void jpeg_wfail(j_common_ptr c) {
    JpegError* e = reinterpret_cast<JpegError*>(c->err);
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}
}  // namespace

bool write_jpeg(FILE* f, const Image& img, int quality) {
    jpeg_compress_struct c;
    JpegError e;
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_wfail;
    bool ok = false;
    jpeg_create_compress(&c);
    if (setjmp(e.jb) == 0) {
        jpeg_stdio_dest(&c, f);
        c.image_width = static_cast<JDIMENSION>(img.width);
        c.image_height = static_cast<JDIMENSION>(img.height);
        c.input_components = 3;
        c.in_color_space = JCS_RGB;
        jpeg_set_defaults(&c);
        jpeg_set_quality(&c, quality, TRUE);
        jpeg_start_compress(&c, TRUE);
        while (c.next_scanline < c.image_height) {
            JSAMPROW row = const_cast<JSAMPROW>(&img.rgb[static_cast<size_t>(c.next_scanline) * img.width * 3]);
            jpeg_write_scanlines(&c, &row, 1);
        }
        jpeg_finish_compress(&c);
        ok = true;
    }
    jpeg_destroy_compress(&c);
    return ok && std::fflush(f) == 0 && !std::ferror(f);
}

}  // namespace ldmind_cli
