// Stand-in found before the real stb_image.h: tessera::core's headers must not need it (tests/package/poison).
#error "a header that tessera::core covers includes <stb_image.h>, which only tessera::tessera provides"
