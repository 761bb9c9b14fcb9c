// PNG through libpng, with runtime/image_in.py's rules (Pillow's checks before and while it
// reads the image data; the messages: image_messages.cpp).
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <new>

#include "codecs.hpp"
#include "image_messages.hpp"

namespace ldmind_cli {

namespace {

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

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
        if (pos + 8 > n) refuse(msg::unrecognised(name));
        const uint32_t len = be32(&d[pos]);
        const uint8_t* cid = &d[pos + 4];
        if (!is_cid(cid)) refuse(msg::unrecognised(name));
        if (std::memcmp(cid, "IDAT", 4) == 0) break;
        if (std::memcmp(cid, "IEND", 4) == 0) refuse(msg::corrupt(name, msg::TRUNCATED));
        if (static_cast<uint64_t>(pos) + 8 + len > n) refuse(msg::corrupt(name, msg::TRUNCATED_READ));
        if (static_cast<uint64_t>(pos) + 12 + len > n) refuse(msg::unrecognised(name));
        const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0, cid, 4), &d[pos + 8], len));
        if (crc != be32(&d[pos + 8 + len])) refuse(msg::unrecognised(name));
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
    if (!ihdr) refuse(msg::unrecognised(name));
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
    bool zdone = false, broken = false;
    auto feed = [&](const uint8_t* p, size_t len) {
        z.next_in = const_cast<Bytef*>(p);
        z.avail_in = static_cast<uInt>(len);
        while (z.avail_in > 0 && produced < need && !zdone) {
            z.next_out = sink.data();
            z.avail_out = static_cast<uInt>(sink.size());
            const int rc = inflate(&z, Z_NO_FLUSH);
            produced += sink.size() - z.avail_out;
            if (rc == Z_STREAM_END) zdone = true;
            else if (rc != Z_OK) { zdone = broken = true; break; }   // Pillow's zlib decoder gives up
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
            if (got < 4) { why = msg::TRUNCATED; break; }   // i32 of a short read
            const uint8_t* cid = hdr + 4;
            if (got < 8 || !is_cid(cid)) { why = msg::broken_png_chunk(cid, got - 4); break; }
            if (std::memcmp(cid, "IDAT", 4) != 0 && std::memcmp(cid, "DDAT", 4) != 0 && std::memcmp(cid, "fdAT", 4) != 0) {
                why = msg::not_processed(0);  // load_read returns b""
                break;
            }
            idat = be32(hdr);
            if (std::memcmp(cid, "fdAT", 4) == 0) { fp += std::min<size_t>(4, n - fp); idat = idat >= 4 ? idat - 4 : 0; }
        }
        if (!why.empty()) break;
        const uint64_t req = std::min<uint64_t>(65536, idat);
        idat -= req;
        const size_t got = static_cast<size_t>(std::min<uint64_t>(req, n - fp));
        if (got == 0) { why = msg::not_processed(0); break; }
        feed(&d[fp], got);
        fp += got;
    }
    inflateEnd(&z);
    if (produced >= need) return "";
    if (broken) return msg::BROKEN_STREAM;    // Pillow: "broken data stream when reading image file"
    return zdone && why.empty() ? "" : why;
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

}  // namespace

bool is_png(const std::vector<uint8_t>& d) { return d.size() >= 8 && std::memcmp(d.data(), PNG_SIG, 8) == 0; }

Image decode_png(const std::vector<uint8_t>& d, const std::string& name) {
    const PngHeader hd = png_open_check(d, name);
    if (static_cast<uint64_t>(hd.width) * hd.height > static_cast<uint64_t>(MAX_INPUT_PIXELS)) refuse(msg::bomb(name));
    if (hd.depth != 16) {
        const std::string why = png_data_check(d, hd);
        if (!why.empty()) refuse(msg::corrupt(name, why));
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
        if (!r.complete) error = r.eof && !r.pad ? msg::TRUNCATED : r.msg;
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
        refuse(msg::sixteen_bit_png(name));
    if (!error.empty()) refuse(msg::corrupt(name, error));
    if (img.width < 1 || img.height < 1)
        refuse(msg::empty_image(name, img.width, img.height));
    if (channels == 4) drop_opaque_alpha(img, buf, name);
    else if (channels == 3) img.rgb.swap(buf);
    else refuse(msg::png_layout(name, channels));
    orient(img, orientation);
    return img;
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

}  // namespace ldmind_cli
