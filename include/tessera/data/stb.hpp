// Detail header: compiles a private copy of stb_image (PNG, JPEG, BMP decoding from memory) into each translation
// unit that includes it. STB_IMAGE_STATIC gives every function internal linkage, so many translation units link.
#pragma once

#include "tessera/data/stb_warnings.hpp"

// stb_image's header part has an include guard but its implementation part has none, and an earlier plain
// include would have declared the functions extern. So tessera must be the first to include <stb_image.h> in a
// translation unit; code that needs stb_image itself can include it after tessera and use the same static copy.
#if defined(STBI_INCLUDE_STB_IMAGE_H) && !defined(TESSERA_STB_IMAGE_COMPILED)
#error "tessera/data needs to include <stb_image.h> first: include tessera's headers before <stb_image.h>"
#endif

#ifndef TESSERA_STB_IMAGE_COMPILED
#define TESSERA_STB_IMAGE_COMPILED

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP

#include <cstdlib>
#include <cstring>

namespace tessera::data::detail {

// The largest block stb_image may allocate on this thread; 0 means no limit. decode_image sets it around each call
// (StbiAllocationLimit) from the image's declared size, so that a small file cannot make stb allocate far more than
// its pixels need (a PNG chunk length of 2 GB, a zlib stream that inflates without end). stb answers a refused
// allocation with its "outofmem" error; stbi_allocation_refused records that the limit was the cause.
inline thread_local size_t stbi_allocation_limit = 0;
inline thread_local bool stbi_allocation_refused = false;

struct StbiAllocationLimit {
  explicit StbiAllocationLimit(size_t limit) {
    stbi_allocation_limit = limit;
    stbi_allocation_refused = false;
  }
  ~StbiAllocationLimit() { stbi_allocation_limit = 0; }
  StbiAllocationLimit(const StbiAllocationLimit&) = delete;
  StbiAllocationLimit& operator=(const StbiAllocationLimit&) = delete;
};

inline bool stbi_allocation_allowed(size_t size) {
  if (stbi_allocation_limit == 0 || size <= stbi_allocation_limit) return true;
  stbi_allocation_refused = true;
  return false;
}

// stb_image's allocations, zeroed: the decoder keeps state in malloc'd blocks that some corrupt files make it read
// before writing, and zeroed memory turns that undefined read into a defined one (docs/reliability.md).
inline void* stbi_zeroed_malloc(size_t size) {
  return stbi_allocation_allowed(size) ? std::calloc(1, size == 0 ? 1 : size) : nullptr;
}
inline void* stbi_zeroed_realloc(void* block, size_t old_size, size_t new_size) {
  if (!stbi_allocation_allowed(new_size)) return nullptr;
  void* grown = std::realloc(block, new_size == 0 ? 1 : new_size);
  if (grown && new_size > old_size) std::memset(static_cast<unsigned char*>(grown) + old_size, 0, new_size - old_size);
  return grown;
}
inline void stbi_free(void* block) { std::free(block); }

}  // namespace tessera::data::detail

#define STBI_MALLOC(size) ::tessera::data::detail::stbi_zeroed_malloc(size)
#define STBI_REALLOC_SIZED(block, old_size, new_size) \
  ::tessera::data::detail::stbi_zeroed_realloc(block, old_size, new_size)
#define STBI_FREE(block) ::tessera::data::detail::stbi_free(block)

TESSERA_STB_WARNINGS_OFF
#include <stb_image.h>
TESSERA_STB_WARNINGS_RESTORE

#undef STB_IMAGE_IMPLEMENTATION

#endif  // TESSERA_STB_IMAGE_COMPILED
