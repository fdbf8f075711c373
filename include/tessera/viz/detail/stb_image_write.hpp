// Detail header: compiles a private copy of stb_image_write (PNG encoding to memory) into each translation unit that
// includes it. STB_IMAGE_WRITE_STATIC gives every function internal linkage, so many translation units link.
#pragma once

#include "tessera/data/stb_warnings.hpp"

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

TESSERA_STB_WARNINGS_OFF
#include <stb_image_write.h>
TESSERA_STB_WARNINGS_RESTORE

#undef STB_IMAGE_WRITE_IMPLEMENTATION

#endif  // TESSERA_STB_IMAGE_WRITE_COMPILED
