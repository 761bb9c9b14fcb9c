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
// CRC up to the first IDAT.  Fills the IHDR fields and the offset of the first IDAT.
struct PngHeader {
    uint32_t width = 0, height = 0;
    int depth = 0, type = 0, interlace = 0;
    size_t idat = 0;
};

PngHeader png_open_check(const std::vector<uint8_t>& d, const std::string& name) {
    PngHeader hd;
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
        if (std::memcmp(cid, "IHDR", 4) == 0 && len >= 13) {
            hd.width = be32(&d[pos + 8]);
            hd.height = be32(&d[pos + 12]);
            hd.depth = d[pos + 16];
            hd.type = d[pos + 17];
            hd.interlace = d[pos + 20];
            ihdr = true;
        }
        pos += 12 + static_cast<size_t>(len);
    }
    if (!ihdr) refuse(unrecognised(name));
    hd.idat = pos;
    return hd;
}

// bytes of filtered image data (a filter byte per row) the IHDR promises
uint64_t png_raw_bytes(const PngHeader& h) {
    const int ch = h.type == 2 ? 3 : h.type == 4 ? 2 : h.type == 6 ? 4 : 1;
    auto rowbytes = [&](uint64_t w) { return (w * ch * static_cast<uint64_t>(h.depth) + 7) / 8; };
    if (!h.interlace) return static_cast<uint64_t>(h.height) * (1 + rowbytes(h.width));
    static const int xs[7] = {0, 4, 0, 2, 0, 1, 0}, ys[7] = {0, 0, 4, 0, 2, 0, 1}, dx[7] = {8, 8, 4, 4, 2, 2, 1},
                     dy[7] = {8, 8, 8, 4, 4, 2, 2};
    uint64_t total = 0;
    for (int p = 0; p < 7; ++p) {
        const uint64_t w = h.width > static_cast<uint32_t>(xs[p]) ? (h.width - xs[p] + dx[p] - 1) / dx[p] : 0;
        const uint64_t r = h.height > static_cast<uint32_t>(ys[p]) ? (h.height - ys[p] + dy[p] - 1) / dy[p] : 0;
        if (w && r) total += r * (1 + rowbytes(w));
    }
    return total;
}

std::string py_bytes_repr(const uint8_t* p, size_t n) {
    std::string s = "b'";
    for (size_t k = 0; k < n; ++k) {
        const uint8_t c = p[k];
        if (c == '\\' || c == '\'') s += std::string("\\") + static_cast<char>(c);
        else if (c == '\t') s += "\\t";
        else if (c == '\n') s += "\\n";
        else if (c == '\r') s += "\\r";
        else if (c < 0x20 || c >= 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            s += b;
        } else s += static_cast<char>(c);
    }
    return s + "'";
}

// Pillow's load of the image data (PngImageFile.load_read under ImageFile.load): IDAT chunks read
// in blocks of up to 64 KiB into its zlib decoder, which stops once every row is decoded.  ""
// when the data suffices (missing CRCs or IEND after it do not matter), else the reason Pillow
// gives for the file cut short.
std::string png_data_check(const std::vector<uint8_t>& d, const PngHeader& h) {
    const size_t n = d.size();
    const uint64_t need = png_raw_bytes(h);
    z_stream z;
    std::memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) throw std::bad_alloc();
    std::vector<uint8_t> sink(1 << 16);
    uint64_t produced = 0;
    bool zdone = false;
    auto feed = [&](const uint8_t* p, size_t len) {
        z.next_in = const_cast<Bytef*>(p);
        z.avail_in = static_cast<uInt>(len);
        while (z.avail_in > 0 && produced < need && !zdone) {
            z.next_out = sink.data();
            z.avail_out = static_cast<uInt>(sink.size());
            const int rc = inflate(&z, Z_NO_FLUSH);
            produced += sink.size() - z.avail_out;
            if (rc == Z_STREAM_END) zdone = true;
            else if (rc != Z_OK) { zdone = true; break; }   // corrupt: libpng reports it
        }
    };
    size_t fp = h.idat + 8;
    uint64_t idat = be32(&d[h.idat]);
    std::string why;
    for (;;) {
        if (produced >= need || zdone) break;
        while (idat == 0) {
            fp += std::min<size_t>(4, n - fp);                          // the CRC
            const size_t got = std::min<size_t>(8, n - fp);
            const uint8_t* hdr = &d[fp];
            fp += got;
            if (got < 4) { why = "image file is truncated"; break; }   // i32 of a short read
            const uint8_t* cid = hdr + 4;
            if (got < 8 || !is_cid(cid)) { why = "broken PNG file (chunk " + py_bytes_repr(cid, got - 4) + ")"; break; }
            if (std::memcmp(cid, "IDAT", 4) != 0 && std::memcmp(cid, "DDAT", 4) != 0 && std::memcmp(cid, "fdAT", 4) != 0) {
                why = "image file is truncated (0 bytes not processed)";  // load_read returns b""
                break;
            }
            idat = be32(hdr);
            if (std::memcmp(cid, "fdAT", 4) == 0) { fp += std::min<size_t>(4, n - fp); idat = idat >= 4 ? idat - 4 : 0; }
        }
        if (!why.empty()) break;
        const uint64_t req = std::min<uint64_t>(65536, idat);
        idat -= req;
        const size_t got = static_cast<size_t>(std::min<uint64_t>(req, n - fp));
        if (got == 0) { why = "image file is truncated (0 bytes not processed)"; break; }
        feed(&d[fp], got);
        fp += got;
    }
    inflateEnd(&z);
    return produced >= need || (zdone && why.empty()) ? "" : why;
}

struct PngReader {
    const std::vector<uint8_t>* d;
    size_t pos;
    bool eof, complete;
    uint32_t height;
    bool interlaced;
    bool pad;            // the data suffices (png_data_check): read zeros past the end
    char msg[256];
};

// all rows decoded (the failure is in what follows them: a CRC, the zlib check value, IEND)
bool rows_done(png_structp png, const PngReader* r) {
    return r->interlaced ? png_get_current_pass_number(png) >= 7 : png_get_current_row_number(png) >= r->height;
}

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    PngReader* r = static_cast<PngReader*>(png_get_io_ptr(png));
    if (r->pos + n > r->d->size()) {
        r->eof = true;
        if (r->pad) {
            const size_t have = r->pos < r->d->size() ? r->d->size() - r->pos : 0;
            std::memcpy(out, r->d->data() + r->pos, have);
            std::memset(out + have, 0, n - have);
            r->pos += n;
            return;
        }
        png_error(png, "read past the end of the file");
    }
    std::memcpy(out, r->d->data() + r->pos, n);
    r->pos += n;
}

void png_fail(png_structp png, png_const_charp m) {
    PngReader* r = static_cast<PngReader*>(png_get_error_ptr(png));
    std::snprintf(r->msg, sizeof r->msg, "%s", m);
    r->complete = rows_done(png, r);
    png_longjmp(png, 1);
}
void png_warn(png_structp, png_const_charp) {}

Image decode_png(const std::vector<uint8_t>& d, const std::string& name) {
    const PngHeader hd = png_open_check(d, name);
    if (static_cast<uint64_t>(hd.width) * hd.height > static_cast<uint64_t>(MAX_INPUT_PIXELS)) refuse(bomb(name));
    if (hd.depth != 16) {
        const std::string why = png_data_check(d, hd);
        if (!why.empty()) refuse(corrupt(name, why));
    }
    PngReader r{&d, 0, false, false, hd.height, hd.interlace != 0, hd.depth != 16, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, png_fail, png_warn);
    if (!png) throw std::bad_alloc();
    png_infop info = png_create_info_struct(png);
    Image img;
    std::vector<uint8_t> buf;
    std::vector<png_bytep> rows;
    std::string error;
    volatile bool sixteen = false;     // volatile: read after a longjmp
    volatile int channels = 0;
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_set_read_fn(png, &r, png_read_mem);
        png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);   // Pillow does not check IDAT CRCs
#ifdef PNG_IGNORE_ADLER32
        png_set_option(png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);          // nor zlib's check value
#endif
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
        if (!r.complete) error = r.eof && !r.pad ? "image file is truncated" : r.msg;
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


// What Pillow's JpegImageFile._open reads before the image data: the marker segments up to the
// start of scan.  A segment cut short is "Truncated File Read", a marker cut short or garbage
// where a marker belongs is "not a recognised image file".
void jpeg_open_check(const std::vector<uint8_t>& d, const std::string& name) {
    const size_t n = d.size();
    size_t pos = 3;                         // after FF D8 FF: Pillow's s = b"\xFF"
    int s0 = 0xff;                          // the pending byte
    for (;;) {
        if (s0 < 0) refuse(unrecognised(name));          // s[0] of b"": IndexError
        if (s0 != 0xff) {                                 // junk: skipped a byte at a time
            s0 = pos < n ? d[pos++] : -1;
            continue;
        }
        if (pos >= n) refuse(unrecognised(name));         // i16 of one byte: struct.error
        const int marker = 0xff00 | d[pos++];
        if (marker >= 0xffc0 && marker <= 0xfffe) {
            const bool segment = !(marker >= 0xffd0 && marker <= 0xffd9);
            if (segment) {
                if (pos + 2 > n) refuse(unrecognised(name));
                const size_t len = (static_cast<size_t>(d[pos]) << 8) | d[pos + 1];
                pos += 2;
                const size_t body = len >= 2 ? len - 2 : 0;
                if (pos + body > n) refuse(corrupt(name, "Truncated File Read"));
                pos += body;
            }
            if (marker == 0xffda) return;                 // start of scan
            s0 = pos < n ? d[pos++] : -1;
        } else if (marker == 0xff00) {
            s0 = pos < n ? d[pos++] : -1;
        } else if (marker == 0xffff) {
            s0 = 0xff;
        } else {
            refuse(unrecognised(name));                   // "no marker found"
        }
    }
}

// Pillow's load of a JPEG cut short: its suspending decoder (libImaging/JpegDecode.c) fed
// 64 KiB blocks (ImageFile.load); the bytes it had not consumed when the data ran out are the N
// of "image file is truncated (N bytes not processed)".  -1: the data decoded to the end;
// -2: the decoder failed ("broken data stream").
struct SuspendingSource {
    jpeg_source_mgr pub;
    long skip = 0;
};
void src_stub(j_decompress_ptr) {}
boolean src_fill(j_decompress_ptr) { return FALSE; }
void src_skip(j_decompress_ptr c, long num) {
    SuspendingSource* s = reinterpret_cast<SuspendingSource*>(c->src);
    if (num > static_cast<long>(s->pub.bytes_in_buffer)) {
        s->skip = num - static_cast<long>(s->pub.bytes_in_buffer);
        s->pub.next_input_byte += s->pub.bytes_in_buffer;
        s->pub.bytes_in_buffer = 0;
    } else {
        s->pub.bytes_in_buffer -= static_cast<size_t>(num);
        s->pub.next_input_byte += num;
        s->skip = 0;
    }
}
void jpeg_quiet(j_common_ptr, int) {}

long pillow_unprocessed(const std::vector<uint8_t>& d) {
    jpeg_decompress_struct c;
    JpegError e;
    SuspendingSource src;
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_fail;
    e.pub.emit_message = jpeg_quiet;
    jpeg_create_decompress(&c);
    src.pub.init_source = src_stub;
    src.pub.fill_input_buffer = src_fill;
    src.pub.skip_input_data = src_skip;
    src.pub.resync_to_restart = jpeg_resync_to_restart;
    src.pub.term_source = src_stub;
    src.pub.bytes_in_buffer = 0;
    src.pub.next_input_byte = nullptr;
    c.src = &src.pub;
    std::vector<uint8_t> b, row;
    size_t pos = 0;
    int state = 1;
    JDIMENSION y = 0;
    long result = -1;
    if (setjmp(e.jb) != 0) {
        jpeg_destroy_decompress(&c);
        return -2;
    }
    for (;;) {
        const size_t take = std::min<size_t>(65536, d.size() - pos);
        if (take == 0) {
            result = static_cast<long>(b.size());
            break;
        }
        b.insert(b.end(), d.begin() + static_cast<long>(pos), d.begin() + static_cast<long>(pos + take));
        pos += take;
        src.pub.next_input_byte = b.data();
        src.pub.bytes_in_buffer = b.size();
        bool finished = false;
        if (src.skip > 0) src_skip(&c, src.skip);
        if (src.skip <= 0) {
            switch (state) {
                case 1: {
                    int ok;
                    do ok = jpeg_read_header(&c, FALSE);
                    while (ok == JPEG_HEADER_TABLES_ONLY);
                    if (ok == JPEG_SUSPENDED) break;
                    c.out_color_space = c.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
                    ++state;
                }
                // fall through
                case 2:
                    if (!jpeg_start_decompress(&c)) break;
                    row.resize(static_cast<size_t>(c.output_width) * static_cast<size_t>(c.output_components));
                    ++state;
                // fall through
                case 3: {
                    int ok = 1;
                    while (y < c.output_height) {
                        JSAMPROW r = row.data();
                        ok = static_cast<int>(jpeg_read_scanlines(&c, &r, 1));
                        if (ok != 1) break;
                        ++y;
                    }
                    if (ok != 1) break;
                    ++state;
                }
                // fall through
                case 4:
                    if (!jpeg_finish_decompress(&c) && y < c.output_height) break;
                    finished = true;
            }
        }
        if (finished) break;
        b.erase(b.begin(), b.begin() + (src.pub.next_input_byte - b.data()));
    }
    jpeg_destroy_decompress(&c);
    return result;
}

std::string truncated_jpeg_reason(const std::vector<uint8_t>& d) {
    const long n = pillow_unprocessed(d);
    if (n >= 0) return "image file is truncated (" + std::to_string(n) + " bytes not processed)";
    return "broken data stream when reading image file";
}

Image decode_jpeg(const std::vector<uint8_t>& d, const std::string& name) {
    jpeg_open_check(d, name);
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
        if (!ok) refuse(corrupt(name, truncated_jpeg_reason(d)));
        r = JpegResult::ok;
    }
    if (r == JpegResult::cmyk)
        refuse(name + ": CMYK JPEG; the C++ CLI reads RGB and greyscale JPEGs only (python -m runtime converts CMYK)");
    if (r == JpegResult::bomb) refuse(bomb(name));
    if (r == JpegResult::failed) refuse(corrupt(name, truncated_jpeg_reason(d)));
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
