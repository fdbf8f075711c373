// Detail header: TESSERA_STB_WARNINGS_OFF and TESSERA_STB_WARNINGS_RESTORE bracket the #include of one of stb's
// single-file libraries (data/stb.hpp, viz/detail/stb_image_write.hpp), whose implementation part warns under the
// flags our users compile with; our own code stays checked.
#pragma once

#if defined(__clang__)
#define TESSERA_STB_WARNINGS_OFF _Pragma("clang diagnostic push") _Pragma("clang diagnostic ignored \"-Weverything\"")
#define TESSERA_STB_WARNINGS_RESTORE _Pragma("clang diagnostic pop")
#elif defined(__GNUC__)
#define TESSERA_STB_WARNINGS_OFF                                         \
  _Pragma("GCC diagnostic push")                                         \
  _Pragma("GCC diagnostic ignored \"-Wunused-function\"")                \
  _Pragma("GCC diagnostic ignored \"-Wunused-parameter\"")               \
  _Pragma("GCC diagnostic ignored \"-Wunused-variable\"")                \
  _Pragma("GCC diagnostic ignored \"-Wunused-but-set-variable\"")        \
  _Pragma("GCC diagnostic ignored \"-Wsign-compare\"")                   \
  _Pragma("GCC diagnostic ignored \"-Wmissing-field-initializers\"")     \
  _Pragma("GCC diagnostic ignored \"-Wimplicit-fallthrough\"")           \
  _Pragma("GCC diagnostic ignored \"-Wshadow\"")                         \
  _Pragma("GCC diagnostic ignored \"-Wconversion\"")                     \
  _Pragma("GCC diagnostic ignored \"-Wsign-conversion\"")                \
  _Pragma("GCC diagnostic ignored \"-Wold-style-cast\"")                 \
  _Pragma("GCC diagnostic ignored \"-Wcast-qual\"")                      \
  _Pragma("GCC diagnostic ignored \"-Wdouble-promotion\"")               \
  _Pragma("GCC diagnostic ignored \"-Wuseless-cast\"")                   \
  _Pragma("GCC diagnostic ignored \"-Wpedantic\"")
#define TESSERA_STB_WARNINGS_RESTORE _Pragma("GCC diagnostic pop")
#else
#define TESSERA_STB_WARNINGS_OFF
#define TESSERA_STB_WARNINGS_RESTORE
#endif
