# Finds Debian's stb headers (libstb-dev puts them in <include>/stb) and makes the target tessera::stb.
if(NOT TARGET tessera::stb)
  find_path(TESSERA_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb
    DOC "Folder holding stb_image.h and stb_image_write.h")
  if(NOT TESSERA_STB_INCLUDE_DIR)
    message(FATAL_ERROR "tessera needs stb_image.h (Debian: apt-get install libstb-dev)")
  endif()
  add_library(tessera::stb INTERFACE IMPORTED)
  set_target_properties(tessera::stb PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${TESSERA_STB_INCLUDE_DIR}")
endif()
