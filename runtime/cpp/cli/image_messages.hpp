// The CLI's refusals of an input image: Pillow's messages as runtime/image_in.py reports them
// (decode_image), in one table, apart from the PNG and JPEG codecs that raise them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ldmind_cli {

// throw ImageError (image_io.hpp) with message m
[[noreturn]] void refuse(const std::string& m);

namespace msg {

// Pillow's reasons inside "truncated or corrupt image file (...)"
extern const char* const TRUNCATED;        // image data cut short
extern const char* const TRUNCATED_READ;   // a chunk or marker segment cut short
extern const char* const BROKEN_STREAM;    // a JPEG the decoder gives up on
std::string not_processed(long bytes);                     // a JPEG's scan cut short (and PNG data after IDAT)
std::string broken_png_chunk(const uint8_t* id, size_t n); // garbage where a PNG chunk belongs

// "<name>: ..." lines
std::string unrecognised(const std::string& name);
std::string corrupt(const std::string& name, const std::string& why);
std::string bomb(const std::string& name);
std::string translucent(const std::string& name);
std::string empty_file(const std::string& name);
std::string empty_image(const std::string& name, int width, int height);
std::string no_such_file(const std::string& name);
std::string is_directory(const std::string& name);
std::string not_a_regular_file(const std::string& name, const char* kind);  // kind: FILE_KINDS' key
std::string cannot_read(const std::string& name, int err);
std::string other_format(const std::string& name, const char* format);
std::string sixteen_bit_png(const std::string& name);
std::string png_layout(const std::string& name, int channels);
std::string cmyk_jpeg(const std::string& name);

}  // namespace msg
}  // namespace ldmind_cli
