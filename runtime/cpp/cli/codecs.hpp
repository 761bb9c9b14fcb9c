// The codecs behind image_io.hpp, and what they share (internal to the CLI): png.cpp, jpeg.cpp,
// and in image_io.cpp the EXIF orientation and the opaque-alpha rule of both.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "image_io.hpp"

namespace ldmind_cli {

bool is_png(const std::vector<uint8_t>& d);
Image decode_png(const std::vector<uint8_t>& d, const std::string& name);
bool is_jpeg(const std::vector<uint8_t>& d);
Image decode_jpeg(const std::vector<uint8_t>& d, const std::string& name);

// the Orientation tag of a TIFF-layout EXIF block (0: none)
int exif_orientation(const uint8_t* p, size_t n);
// turn img upright by an EXIF orientation (Pillow's ImageOps.exif_transpose)
void orient(Image& img, int orientation);
// RGBA rows -> img's RGB when the alpha is 255 everywhere, else refused (image_messages.hpp)
void drop_opaque_alpha(Image& img, const std::vector<uint8_t>& rgba, const std::string& name);

}  // namespace ldmind_cli
