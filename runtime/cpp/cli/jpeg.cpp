// JPEG through libjpeg, with runtime/image_in.py's rules (Pillow's checks before the scan, a
// missing end marker tolerated; the messages: image_messages.cpp).
#include <csetjmp>
#include <cstddef>
#include <cstdio>      // before jpeglib.h, which uses size_t and FILE without declaring them
#include <cstring>

#include <jpeglib.h>
#include <jerror.h>

#include "codecs.hpp"
#include "image_messages.hpp"

namespace ldmind_cli {

namespace {

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
        if (s0 < 0) refuse(msg::unrecognised(name));          // s[0] of b"": IndexError
        if (s0 != 0xff) {                                 // junk: skipped a byte at a time
            s0 = pos < n ? d[pos++] : -1;
            continue;
        }
        if (pos >= n) refuse(msg::unrecognised(name));         // i16 of one byte: struct.error
        const int marker = 0xff00 | d[pos++];
        if (marker >= 0xffc0 && marker <= 0xfffe) {
            const bool segment = !(marker >= 0xffd0 && marker <= 0xffd9);
            if (segment) {
                if (pos + 2 > n) refuse(msg::unrecognised(name));
                const size_t len = (static_cast<size_t>(d[pos]) << 8) | d[pos + 1];
                pos += 2;
                const size_t body = len >= 2 ? len - 2 : 0;
                if (pos + body > n) refuse(msg::corrupt(name, msg::TRUNCATED_READ));
                pos += body;
            }
            if (marker == 0xffda) return;                 // start of scan
            s0 = pos < n ? d[pos++] : -1;
        } else if (marker == 0xff00) {
            s0 = pos < n ? d[pos++] : -1;
        } else if (marker == 0xffff) {
            s0 = 0xff;
        } else {
            refuse(msg::unrecognised(name));                   // "no marker found"
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
    return n >= 0 ? msg::not_processed(n) : msg::BROKEN_STREAM;
}

}  // namespace

bool is_jpeg(const std::vector<uint8_t>& d) { return d.size() >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff; }

Image decode_jpeg(const std::vector<uint8_t>& d, const std::string& name) {
    jpeg_open_check(d, name);
    Image img;
    int orientation = 0;
    std::string why;
    JpegResult r = jpeg_once(d, img, &orientation, &why);
    if (r == JpegResult::eof) {
        // image_in._jpeg_without_eoi: read when only the end marker is missing
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
        if (!ok) refuse(msg::corrupt(name, truncated_jpeg_reason(d)));
        r = JpegResult::ok;
    }
    if (r == JpegResult::cmyk)
        refuse(msg::cmyk_jpeg(name));
    if (r == JpegResult::bomb) refuse(msg::bomb(name));
    if (r == JpegResult::failed) refuse(msg::corrupt(name, truncated_jpeg_reason(d)));
    if (img.width < 1 || img.height < 1)
        refuse(msg::empty_image(name, img.width, img.height));
    orient(img, orientation);
    return img;
}


// -- output ------------------------------------------------------------------------------------
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
