// Detail header: compiles a private copy of stb_image_write (PNG encoding to memory) into each translation unit that
// includes it. STB_IMAGE_WRITE_STATIC gives every function internal linkage, so many translation units link.
#pragma once

// stb_image_write's header part has an include guard but its implementation part has none, and an earlier plain
// include would have declared the functions extern. So tessera must be the first to include <stb_image_write.h>
// in a translation unit; code that needs it itself can include it after tessera and use the same static copy.
#if defined(INCLUDE_STB_IMAGE_WRITE_H) && !defined(TESSERA_STB_IMAGE_WRITE_COMPILED)
#error "tessera/viz needs to include <stb_image_write.h> first: include tessera's headers before <stb_image_write.h>"
#endif

#ifndef TESSERA_STB_IMAGE_WRITE_COMPILED
#define TESSERA_STB_IMAGE_WRITE_COMPILED

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO

#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Weverything"
#elif defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#pragma GCC diagnostic ignored "-Wpedantic"
#endif

#include <stb_image_write.h>

#if defined(__clang__)
#pragma clang diagnostic pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#undef STB_IMAGE_WRITE_IMPLEMENTATION

#endif  // TESSERA_STB_IMAGE_WRITE_COMPILED
