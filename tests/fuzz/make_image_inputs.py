#!/usr/bin/env python3
"""Writes the seed corpus of the image_decode fuzz target (tests/fuzz/corpus/image_decode/) and its regression inputs
(tests/fuzz/regressions/image_decode/): tiny PNG, JPEG (baseline, progressive, grey, 4:4:4) and BMP files made with
Pillow, and the crash inputs of issue 17. Each is kept as hex text, `<name>.hex` (no image files in the repository):
tests/hardening_test.cpp and scripts/run_fuzzers.sh turn them back into bytes.
Usage: python3 tests/fuzz/make_image_inputs.py tests/fuzz"""
import base64
import io
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image


def picture(width, height, mode="RGB"):
    image = Image.new("RGB", (width, height))
    image.putdata([((x * 37) % 256, (y * 59) % 256, ((x + y) * 23) % 256) for y in range(height) for x in range(width)])
    return image.convert(mode)


def encoded(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def write_hex(path, data):
    """Writes `data` as lowercase hex, 64 bytes a line, to `path`.hex."""
    text = data.hex()
    lines = [text[i:i + 128] for i in range(0, len(text), 128)]
    path.with_name(path.name + ".hex").write_text("\n".join(lines) + "\n")


def segments(jpeg):
    """(offset of the 0xFF, marker code, segment length) of each marker segment before the first scan."""
    pos, found = 2, []
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF:
        code = jpeg[pos + 1]
        length = struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
        found.append((pos, code, length))
        if code == 0xDA:
            break
        pos += 2 + length
    return found


def main(root):
    corpus = root / "corpus" / "image_decode"
    regressions = root / "regressions" / "image_decode"
    corpus.mkdir(parents=True, exist_ok=True)
    regressions.mkdir(parents=True, exist_ok=True)
    baseline = encoded(picture(8, 8), "JPEG", quality=75)
    seeds = {
        "rgb_8x8_baseline.jpg": baseline,
        "rgb_16x8_progressive.jpg": encoded(picture(16, 8), "JPEG", quality=60, progressive=True),
        "rgb_8x8_444.jpg": encoded(picture(8, 8), "JPEG", quality=90, subsampling=0),
        "grey_8x8.jpg": encoded(picture(8, 8, "L"), "JPEG", quality=75),
        "rgb_5x3.png": encoded(picture(5, 3), "PNG"),
        "rgba_4x4.png": encoded(picture(4, 4, "RGBA"), "PNG"),
        "palette_4x4.png": encoded(picture(4, 4, "P"), "PNG"),
        "grey_3x2.png": encoded(picture(3, 2, "L"), "PNG"),
        "rgb_5x3.bmp": encoded(picture(5, 3), "BMP"),
    }
    for name, data in seeds.items():
        write_hex(corpus / name, data)

    # Issue 17: a DHT segment declaring more than 256 codes (stb 2.27 writes past its tables), 9 bytes.
    write_hex(regressions / "dht_overflow_9_bytes.jpg", bytes.fromhex("ffd8ffc4001500d9d9"))
    # The same inside a real JPEG: the first table's 16 counts raised to 300 codes.
    dht = next(pos for pos, code, _ in segments(baseline) if code == 0xC4)
    patched = bytearray(baseline)
    patched[dht + 5:dht + 21] = bytes([0] * 14 + [150, 150])
    write_hex(regressions / "dht_300_codes.jpg", bytes(patched))
    # Issue 17: a small JPEG declaring 64513 x 3616 pixels (stb decodes it into 1.4 GB).
    sof = next(pos for pos, code, _ in segments(baseline) if code == 0xC0)
    patched = bytearray(baseline)
    patched[sof + 5:sof + 9] = struct.pack(">HH", 3616, 64513)
    write_hex(regressions / "huge_64513x3616.jpg", bytes(patched))
    # A PNG whose header declares 16384 x 16384 pixels (stb's own limit, 2^30 bytes, lets 800 MB through).
    png = bytearray(seeds["rgb_5x3.png"])
    png[16:24] = struct.pack(">II", 16384, 16384)
    write_hex(regressions / "huge_16384x16384.png", bytes(png))
    # Found by fuzz_image_decode: a 4x4 PNG whose IDAT chunk declares 2113929245 bytes in an 86-byte file (stb
    # allocates the declared length first). These are its bytes, libFuzzer's artifact.
    write_hex(regressions / "png_idat_2gb_length.png", bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000040000000408060000"
        "00a99ef1007e00001d49444154789c636460" "60f8afca20ce00c32c0cd6e20c0c0c084cd800009be60386834c77a5"
        "0000000049454e44ae426082"))
    # Found by fuzz_image_decode (a slow unit): an 81-byte BMP declaring 61 x 196608 pixels, which stb fills with zeros.
    write_hex(regressions / "bmp_12_megapixels_in_81_bytes.bmp", bytes.fromhex(
        "424d660000000000000036000000280000003d00000000000300010018000000000030000000c40e"
        "0000c40e000000000000000000000000000036000000002effffff1f4a5c3b6f733b94000000001700"))
    # Found by fuzz_image_decode (its 30-minute campaign): a 39-byte BMP whose row bytes times rows overflow int64 in
    # tessera's own BMP size check. These are its bytes, libFuzzer's artifact.
    write_hex(regressions / "bmp_rows_overflow.bmp",
              bytes.fromhex("424d6610000000270000000000000000003427ffff6060002a8a80001800008000003000008400"))
    # Found by fuzz_image_decode: a PNG whose first IDAT chunk is empty (stb copies its zero bytes to a null pointer).
    # Here rgb_5x3.png with an empty IDAT chunk before its own.
    png = seeds["rgb_5x3.png"]
    idat = png.index(b"IDAT") - 4
    empty_idat = struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT"))
    write_hex(regressions / "png_empty_first_idat.png", png[:idat] + empty_idat + png[idat:])
    # A zlib bomb: an 8x8 PNG whose IDAT inflates to 20 MB (stb keeps enlarging its buffer).
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(bytes(20_000_000), 9)) + chunk(b"IEND", b""))
    write_hex(regressions / "png_zlib_bomb.png", bomb)
    # Found by the fuzz_image_decode campaign: a 507-byte JPEG (mutated from the rgb_8x8_baseline.jpg seed, whose
    # quantisation table and first scan bytes it shares) on which stb 2.27 shifts by 38 bits (UBSan, in
    # stbi__grow_buffer_unsafe). These are its bytes, libFuzzer's artifact. Only builds with libjpeg replay it
    # (docs/reliability.md).
    write_hex(regressions / "jpeg_stb_shift.jpg", base64.b64decode(
        "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAx"
        "NDQ0Hyc5PTgyPC4zNDL/wAALCAAIADIBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUF"
        "BAQAAAF9AQIDAAQRBRIhMUEGE3EiB1FhFDGBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0T/2AIxAAAYEQAC"
        "AAABESMx/9QAAAAAAAAAAAABESEx/9TEAAIDAQARITH/1AAIAWFD/9mmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT19XW19jZ2uHi"
        "4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/AM3TM20GLSLl30vUQPJf/iVYpz8p/wBu////////////////////////////////"
        "/////////7//////////////////////////////////////////////////AABhMAADmxT/////////////////////////////"
        "/////////wAC/////////////////////////wAAAAAAAP/////////////////////////////Z"))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent))
