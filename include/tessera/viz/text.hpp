// Text on pictures: a 5x7 bitmap font of the printable ASCII characters (' ' to '~'), drawn by tessera itself, and
// draw_text, which paints a line of it into an RGB data::Image at a whole-number scale.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "tessera/core/error.hpp"
#include "tessera/data/image.hpp"
#include "tessera/viz/colormap.hpp"

namespace tessera::viz {

// A glyph is kGlyphWidth x kGlyphHeight font pixels; characters advance by kGlyphAdvance (one blank column between
// them). Capitals and digits fill the 7 rows; lower-case letters sit in rows 2 to 6 (g, j, p, q, y reach row 6 from
// above instead of descending).
inline constexpr int64_t kGlyphWidth = 5, kGlyphHeight = 7, kGlyphAdvance = 6;

namespace detail {

// The font, 8 characters a block in ASCII order from ' ' (32) to '~' (126): row r of character c is
// kFontRows[(c - 32) / 8 * 7 + r], columns (c - 32) % 8 * 6 to +4; '#' is a lit pixel.
inline constexpr std::array<std::string_view, 84> kFontRows = {
    // ' '   '!'   '"'   '#'   '$'   '%'   '&'   '\''
    "..... ..#.. .#.#. .#.#. ..#.. ##... .##.. ..#..",
    "..... ..#.. .#.#. .#.#. .#### ##..# #..#. ..#..",
    "..... ..#.. ..... ##### #.#.. ...#. #.#.. .....",
    "..... ..#.. ..... .#.#. .###. ..#.. .#... .....",
    "..... ..#.. ..... ##### ..#.# .#... #.#.# .....",
    "..... ..... ..... .#.#. ####. #..## #..#. .....",
    "..... ..#.. ..... .#.#. ..#.. ...## .##.# .....",
    // '('   ')'   '*'   '+'   ','   '-'   '.'   '/'
    "...#. .#... ..... ..... ..... ..... ..... .....",
    "..#.. ..#.. ..#.. ..#.. ..... ..... ..... ....#",
    ".#... ...#. #.#.# ..#.. ..... ..... ..... ...#.",
    ".#... ...#. .###. ##### ..... ##### ..... ..#..",
    ".#... ...#. #.#.# ..#.. ..#.. ..... ..... .#...",
    "..#.. ..#.. ..#.. ..#.. ..#.. ..... .##.. #....",
    "...#. .#... ..... ..... .#... ..... .##.. .....",
    // '0'   '1'   '2'   '3'   '4'   '5'   '6'   '7'
    ".###. ..#.. .###. ##### ...#. ##### ..##. #####",
    "#...# .##.. #...# ...#. ..##. #.... .#... ....#",
    "#..## ..#.. ....# ..#.. .#.#. ####. #.... ...#.",
    "#.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#..",
    "##..# ..#.. ..#.. ....# ##### ....# #...# .#...",
    "#...# ..#.. .#... #...# ...#. #...# #...# .#...",
    ".###. .###. ##### .###. ...#. .###. .###. .#...",
    // '8'   '9'   ':'   ';'   '<'   '='   '>'   '?'
    ".###. .###. ..... ..... ...#. ..... .#... .###.",
    "#...# #...# .##.. .##.. ..#.. ..... ..#.. #...#",
    "#...# #...# .##.. .##.. .#... ##### ...#. ....#",
    ".###. .#### ..... ..... #.... ..... ....# ...#.",
    "#...# ....# .##.. .##.. .#... ##### ...#. ..#..",
    "#...# ...#. .##.. ..#.. ..#.. ..... ..#.. .....",
    ".###. .##.. ..... .#... ...#. ..... .#... ..#..",
    // '@'   'A'   'B'   'C'   'D'   'E'   'F'   'G'
    ".###. .###. ####. .###. ###.. ##### ##### .###.",
    "#...# #...# #...# #...# #..#. #.... #.... #...#",
    "....# #...# #...# #.... #...# #.... #.... #....",
    ".##.# ##### ####. #.... #...# ####. ####. #.###",
    "#.#.# #...# #...# #.... #...# #.... #.... #...#",
    "#.#.# #...# #...# #...# #..#. #.... #.... #...#",
    ".###. #...# ####. .###. ###.. ##### #.... .####",
    // 'H'   'I'   'J'   'K'   'L'   'M'   'N'   'O'
    "#...# .###. ..### #...# #.... #...# #...# .###.",
    "#...# ..#.. ...#. #..#. #.... ##.## #...# #...#",
    "#...# ..#.. ...#. #.#.. #.... #.#.# ##..# #...#",
    "##### ..#.. ...#. ##... #.... #.#.# #.#.# #...#",
    "#...# ..#.. ...#. #.#.. #.... #...# #..## #...#",
    "#...# ..#.. #..#. #..#. #.... #...# #...# #...#",
    "#...# .###. .##.. #...# ##### #...# #...# .###.",
    // 'P'   'Q'   'R'   'S'   'T'   'U'   'V'   'W'
    "####. .###. ####. .#### ##### #...# #...# #...#",
    "#...# #...# #...# #.... ..#.. #...# #...# #...#",
    "#...# #...# #...# #.... ..#.. #...# #...# #...#",
    "####. #...# ####. .###. ..#.. #...# #...# #.#.#",
    "#.... #.#.# #.#.. ....# ..#.. #...# #...# #.#.#",
    "#.... #..#. #..#. ....# ..#.. #...# .#.#. #.#.#",
    "#.... .##.# #...# ####. ..#.. .###. ..#.. .#.#.",
    // 'X'   'Y'   'Z'   '['   '\'   ']'   '^'   '_'
    "#...# #...# ##### .###. ..... .###. ..#.. .....",
    "#...# #...# ....# .#... #.... ...#. .#.#. .....",
    ".#.#. .#.#. ...#. .#... .#... ...#. #...# .....",
    "..#.. ..#.. ..#.. .#... ..#.. ...#. ..... .....",
    ".#.#. ..#.. .#... .#... ...#. ...#. ..... .....",
    "#...# ..#.. #.... .#... ....# ...#. ..... .....",
    "#...# ..#.. ##### .###. ..... .###. ..... #####",
    // '`'   'a'   'b'   'c'   'd'   'e'   'f'   'g'
    ".#... ..... #.... ..... ....# ..... ..##. .....",
    "..#.. ..... #.... ..... ....# ..... .#..# .####",
    "..... .###. #.##. .###. .##.# .###. .#... #...#",
    "..... ....# ##..# #.... #..## #...# ###.. #...#",
    "..... .#### #...# #.... #...# ##### .#... .####",
    "..... #...# #...# #...# #...# #.... .#... ....#",
    "..... .#### ####. .###. .#### .###. .#... .###.",
    // 'h'   'i'   'j'   'k'   'l'   'm'   'n'   'o'
    "#.... ..#.. ...#. #.... .##.. ..... ..... .....",
    "#.... ..... ..... #.... ..#.. ..... ..... .....",
    "#.##. .##.. ..##. #..#. ..#.. ##.#. #.##. .###.",
    "##..# ..#.. ...#. #.#.. ..#.. #.#.# ##..# #...#",
    "#...# ..#.. ...#. ##... ..#.. #.#.# #...# #...#",
    "#...# ..#.. #..#. #.#.. ..#.. #...# #...# #...#",
    "#...# .###. .##.. #..#. .###. #...# #...# .###.",
    // 'p'   'q'   'r'   's'   't'   'u'   'v'   'w'
    "..... ..... ..... ..... .#... ..... ..... .....",
    "..... ..... ..... ..... .#... ..... ..... .....",
    "####. .##.# #.##. .###. ###.. #...# #...# #...#",
    "#...# #..## ##..# #.... .#... #...# #...# #...#",
    "####. .#### #.... .###. .#... #...# #...# #.#.#",
    "#.... ....# #.... ....# .#..# #..## .#.#. #.#.#",
    "#.... ....# #.... ####. ..##. .##.# ..#.. .#.#.",
    // 'x'   'y'   'z'   '{'   '|'   '}'   '~'
    "..... ..... ..... ...#. ..#.. .#... .....",
    "..... ..... ..... ..#.. ..#.. ..#.. .....",
    "#...# #...# ##### ..#.. ..#.. ..#.. .#...",
    ".#.#. #...# ...#. .#... ..#.. ...#. #.#.#",
    "..#.. .#### ..#.. ..#.. ..#.. ..#.. ...#.",
    ".#.#. ....# .#... ..#.. ..#.. ..#.. .....",
    "#...# .###. ##### ...#. ..#.. .#... .....",
};

}  // namespace detail

// Whether font pixel (x, y) of character `c` is lit (x in [0, 5), y in [0, 7)). A character outside ' ' to '~' is
// drawn as '?'.
constexpr bool glyph_pixel(char c, int64_t x, int64_t y) {
  if (x < 0 || x >= kGlyphWidth || y < 0 || y >= kGlyphHeight) return false;
  const int code = (c < ' ' || c > '~') ? '?' - ' ' : c - ' ';
  const std::string_view row = detail::kFontRows[static_cast<size_t>(code / 8 * kGlyphHeight + y)];
  return row[static_cast<size_t>(code % 8 * kGlyphAdvance + x)] == '#';
}

// The width in pixels of `text` drawn at `scale`: (6 * characters - 1) * scale, 0 for no text.
inline int64_t text_width(std::string_view text, int64_t scale = 1) {
  return text.empty() ? 0 : (kGlyphAdvance * static_cast<int64_t>(text.size()) - 1) * scale;
}

// The height in pixels of a line of text at `scale`: 7 * scale.
inline int64_t text_height(int64_t scale = 1) { return kGlyphHeight * scale; }

// Paints `text` into `canvas` (1 to 4 channels; grey gets the colour's luma, an alpha channel becomes opaque) with its
// top-left corner at (top, left): every lit font pixel becomes a scale x scale square of `colour`; nothing else
// changes. Pixels outside the canvas are skipped, so text may run over its edges.
inline void draw_text(data::Image& canvas, int64_t top, int64_t left, std::string_view text, Rgb colour,
                      int64_t scale = 1) {
  TESSERA_CHECK(scale >= 1, "draw_text: scale must be at least 1, got ", scale);
  TESSERA_CHECK(canvas.channels >= 1 && canvas.channels <= 4 &&
                    static_cast<int64_t>(canvas.pixels.size()) == canvas.numel(),
                "draw_text: the canvas must hold 1 to 4 channels of pixels, got ", canvas.size_string(), " with ",
                canvas.pixels.size(), " bytes");
  const uint8_t rgb[3] = {colour.r, colour.g, colour.b};
  const auto luma = static_cast<uint8_t>((299 * colour.r + 587 * colour.g + 114 * colour.b + 500) / 1000);
  for (size_t i = 0; i < text.size(); ++i) {
    const int64_t glyph_left = left + static_cast<int64_t>(i) * kGlyphAdvance * scale;
    for (int64_t y = 0; y < kGlyphHeight; ++y)
      for (int64_t x = 0; x < kGlyphWidth; ++x) {
        if (!glyph_pixel(text[i], x, y)) continue;
        for (int64_t dy = 0; dy < scale; ++dy)
          for (int64_t dx = 0; dx < scale; ++dx) {
            const int64_t py = top + y * scale + dy, px = glyph_left + x * scale + dx;
            if (py < 0 || py >= canvas.height || px < 0 || px >= canvas.width) continue;
            uint8_t* p = canvas.data() + (py * canvas.width + px) * canvas.channels;
            if (canvas.channels <= 2) {
              p[0] = luma;
            } else {
              for (int k = 0; k < 3; ++k) p[k] = rgb[k];
            }
            if (canvas.channels == 2 || canvas.channels == 4) p[canvas.channels - 1] = 255;
          }
      }
  }
}

}  // namespace tessera::viz
