// The message table of image_messages.hpp.  Pillow's behaviour as runtime/image_in.py's
// decode_image reports it: a PNG whose chunks before the image data are cut short or fail their
// checksum is "not a recognised image file"; a chunk whose data is cut short is "truncated or
// corrupt image file (Truncated File Read)"; image data cut short is "truncated or corrupt image
// file (image file is truncated)"; a PNG without its IEND chunk is read.  A JPEG cut short is
// "(Truncated File Read)" unless only its end marker is missing (image_in._jpeg_without_eoi's
// test: decoded with the marker closed and with filler bytes before it, the same pixels).  A PNG whose
// zlib stream breaks before every row is decoded is "(broken data stream when reading image file)".
#include "image_messages.hpp"

#include <cstdio>
#include <cstring>

#include "image_io.hpp"
#include "contract.hpp"

namespace ldmind_cli {

void refuse(const std::string& m) { throw ImageError(m); }

namespace msg {

const char* const TRUNCATED = "image file is truncated";
const char* const TRUNCATED_READ = "Truncated File Read";
const char* const BROKEN_STREAM = "broken data stream when reading image file";

std::string not_processed(long bytes) {
    return "image file is truncated (" + std::to_string(bytes) + " bytes not processed)";
}

// Python's repr of the bytes, as Pillow's message quotes them
std::string broken_png_chunk(const uint8_t* p, size_t n) {
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
    return "broken PNG file (chunk " + s + "')";
}

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
std::string empty_file(const std::string& name) { return name + ": empty file (0 bytes), not an image"; }
std::string empty_image(const std::string& name, int width, int height) {
    return name + ": empty image (" + std::to_string(width) + "x" + std::to_string(height) + ")";
}
std::string no_such_file(const std::string& name) { return name + ": no such file"; }
std::string is_directory(const std::string& name) { return name + ": is a directory, not an image file"; }
std::string not_a_regular_file(const std::string& name, const char* kind) {
    return ldmind::contract::fill(ldmind::contract::NOT_A_REGULAR_FILE,
                                  {name, ldmind::contract::FILE_KINDS.at(kind)});
}
std::string cannot_read(const std::string& name, int err) {
    return name + ": cannot read (" + std::strerror(err) + ")";
}
std::string other_format(const std::string& name, const char* format) {
    return name + ": a " + format + " image; the C++ CLI reads PNG and JPEG only (python -m runtime reads " + format +
           ")";
}
std::string sixteen_bit_png(const std::string& name) {
    return name + ": 16-bit PNG; the C++ CLI reads 8-bit images only (python -m runtime upscale keeps 16 bits)";
}
std::string png_layout(const std::string& name, int channels) {
    return name + ": unsupported PNG layout (" + std::to_string(channels) + " channels)";
}
std::string cmyk_jpeg(const std::string& name) {
    return name + ": CMYK JPEG; the C++ CLI reads RGB and greyscale JPEGs only (python -m runtime converts CMYK)";
}

}  // namespace msg
}  // namespace ldmind_cli
