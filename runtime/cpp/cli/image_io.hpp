// Image files for the ldmind CLI: PNG and JPEG in (libpng, libjpeg), 8-bit RGB out, with the
// Python runtime's rules and messages (runtime/image_in.py) where the C++ CLI can follow them.
// The codecs: png.cpp, jpeg.cpp; the messages: image_messages.cpp.
#pragma once
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace ldmind_cli {

// A refusal of the input image: one line, starting with the file's name (image_in.py's InputError).
struct ImageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;   // [height][width][3]
};

// Pillow's MAX_IMAGE_PIXELS: larger headers are refused before any pixel is decoded.
constexpr int64_t MAX_INPUT_PIXELS = 89478485;

// Read `path` (its name in messages: `name`) as 8-bit RGB: PNG (palette, grey, 1/2/4/8 bits,
// interlaced; alpha dropped when opaque everywhere) or JPEG (grey or YCbCr; a missing end
// marker tolerated as image_in.py does); EXIF orientation applied.  Refused with ImageError: 16-bit
// PNGs, images with transparent pixels, CMYK JPEGs, other formats, corrupt or truncated files.
Image load_image(const std::string& path, const std::string& name);

// Decode an in-memory file (the same rules as load_image).
Image decode_image(const std::vector<uint8_t>& data, const std::string& name);

// Encode to an open file; false (errno set where the C library set it) on a write failure.
bool write_png(FILE* f, const Image& img);
bool write_jpeg(FILE* f, const Image& img, int quality);

}  // namespace ldmind_cli
