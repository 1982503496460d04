"""Hostile uploads, made on the fly: what a broken client or an attacker sends instead of a digit.

Each catalog maps a case name to (bytes, expected HTTP status, expected error code or None for a
success). Everything is generated here, seeded, in well under a second.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw

PHP = b"<?php system($_GET['c']); ?>"
HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def digit(size: int = 140) -> Image.Image:
    """A plain '7' in dark ink on white paper: what the model can read."""
    img = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(img)
    w = max(3, size // 12)
    d.line((size * 0.25, size * 0.2, size * 0.75, size * 0.2), fill=0, width=w)
    d.line((size * 0.75, size * 0.2, size * 0.4, size * 0.85), fill=0, width=w)
    return img


def save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_from_chunks(width: int, height: int, bit_depth: int, color_type: int, *chunks: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + b"".join(chunks) + png_chunk(b"IEND", b"")


def zeros_deflated(total: int, piece: int = 1 << 20) -> bytes:
    """zlib stream of `total` zero bytes, compressed piece by piece (a bomb's payload, ~1000:1)."""
    z, out, zero = zlib.compressobj(9), [], bytes(piece)
    for start in range(0, total, piece):
        out.append(z.compress(zero[: min(piece, total - start)]))
    out.append(z.flush())
    return b"".join(out)


def png_bomb(side: int) -> bytes:
    """A complete, valid 1-bit PNG of side x side black pixels: ~side^2/8000 bytes on disk."""
    row = 1 + (side + 7) // 8  # filter byte + packed bits
    return png_from_chunks(side, side, 1, 0, png_chunk(b"IDAT", zeros_deflated(row * side)))


def png_header_bomb(width: int, height: int) -> bytes:
    """An 8-bit grey PNG that claims huge dimensions and carries a token of pixel data."""
    return png_from_chunks(width, height, 8, 0, png_chunk(b"IDAT", zlib.compress(bytes(1 << 16))))


def ztxt_bomb(inflated: int = 256 << 20) -> bytes:
    """A small valid PNG with a compressed text chunk that inflates to `inflated` bytes."""
    png = save(digit(), "PNG")
    ztxt = png_chunk(b"zTXt", b"Comment\x00\x00" + zeros_deflated(inflated))
    return png[:33] + ztxt + png[33:]  # right after IHDR (8-byte signature + 25-byte IHDR chunk)


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is patched to claim width x height."""
    jpg = bytearray(save(Image.new("L", (16, 16), 255), "JPEG", quality=90))
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpg)


def zip_archive() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("shell.php", PHP)
        z.writestr("index.html", HTML)
    return buf.getvalue()


def psd_header() -> bytes:
    """Photoshop: '8BPS', version 1, 6 reserved bytes, 1 channel, 8x8, 8 bits, greyscale."""
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, 8, 8, 8, 1) + bytes(64)


def animated(fmt: str) -> bytes:
    frames = [digit(64), Image.new("L", (64, 64), 255)]
    return save(frames[0].convert("RGB" if fmt == "WEBP" else "L"), fmt, save_all=True,
                append_images=[f.convert("RGB" if fmt == "WEBP" else "L") for f in frames[1:]], duration=100, loop=0)


def foreign_formats() -> dict[str, tuple[bytes, int, str]]:
    """Formats outside the PNG/JPEG allowlist: refused by their content, whatever name or type they carry."""
    small = digit(32)
    cases = {
        "tiff": save(small, "TIFF"),
        "eps": save(small, "EPS"),
        "psd": psd_header(),
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>',
        "animated gif": animated("GIF"),
        "animated webp": animated("WEBP"),
        "bmp": save(small, "BMP"),
        "ico": save(small, "ICO"),
        "pdf": save(small.convert("RGB"), "PDF"),
        "jpeg 2000": b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(64),
        "html": HTML,
        "php": PHP,
        "zip": zip_archive(),
        "elf": b"\x7fELF\x02\x01\x01" + bytes(120),
        "random bytes": np.random.default_rng(11).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "zeros": bytes(4096),
    }
    return {name: (data, 415, "unsupported_media_type") for name, data in cases.items()}


def broken_images() -> dict[str, tuple[bytes, int, str]]:
    """PNG and JPEG signatures in front of damaged or missing data."""
    png, jpg = save(digit(), "PNG"), save(digit().convert("RGB"), "JPEG", quality=85)
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # IHDR's CRC
    flipped = bytearray(png)
    idat = png.index(b"IDAT")
    for i in range(idat + 10, len(png) - 20, 7):  # wreck the compressed pixel data
        flipped[i] ^= 0x5A
    jpg_scrambled = bytearray(jpg)
    sos = jpg.index(b"\xff\xda")
    jpg_scrambled[sos + 20 : -2] = bytes(rng.integers(0, 256, len(jpg) - sos - 22, dtype=np.uint8))
    cases = {
        "png signature only": png[:8],
        "png truncated in IHDR": png[:20],
        "png truncated in IDAT": png[: len(png) // 2],
        "png bad IHDR crc": bytes(bad_crc),
        "png corrupted pixels": bytes(flipped),
        "png signature + noise": png[:8] + noise,
        "png zero size": png_from_chunks(0, 0, 8, 0, png_chunk(b"IDAT", zlib.compress(b""))),
        "jpeg SOI only": jpg[:3],
        "jpeg truncated headers": jpg[:60],
        "jpeg signature + noise": jpg[:3] + noise,
        "jpeg scrambled scan": bytes(jpg_scrambled),
    }
    return {name: (data, 400, "bad_image") for name, data in cases.items()}


def tolerated() -> dict[str, tuple[bytes, set[int]]]:
    """Damage that decoders may legitimately forgive: a clean answer either way, never a 5xx."""
    png, jpg = save(digit(), "PNG"), save(digit().convert("RGB"), "JPEG", quality=85)
    return {
        "png without IEND": (png[:-12], {200, 400, 422}),
        "jpeg truncated in the scan": (jpg[: len(jpg) // 2], {200, 400, 422}),
        "jpeg without EOI": (jpg[:-2], {200, 400, 422}),
    }


def polyglots() -> dict[str, tuple[bytes, int, None]]:
    """Valid digit images that are also something else. The image part is classified; the rest is
    never executed, stored, nor echoed back."""
    png, img = save(digit(), "PNG"), digit().convert("RGB")
    jpg = save(img, "JPEG", quality=90)
    iend = png.rindex(b"IEND") - 4
    cases = {
        "png + zip (png/zip polyglot)": png + zip_archive(),
        "png + html": png + HTML,
        "png with html in a text chunk": png[:33] + png_chunk(b"tEXt", b"Comment\x00" + HTML) + png[33:],
        "png with a chunk after IEND": png + png_chunk(b"evIl", PHP),
        "png with an unknown ancillary chunk": png[:iend] + png_chunk(b"phPz", PHP) + png[iend:],
        "jpeg with php in a comment (jpeg/php polyglot)": save(img, "JPEG", quality=90, comment=PHP),
        "jpeg + php": jpg + PHP,
        "jpeg + zip": jpg + zip_archive(),
    }
    return {name: (data, 200, None) for name, data in cases.items()}


def bombs(max_pixels: int = 40_000_000) -> dict[str, tuple[bytes, int, str]]:
    """Tiny files that would decode into gigabytes: refused from the header, before any pixel."""
    over = int(max_pixels ** 0.5) + 100  # just over the server's limit, under Pillow's own guard
    cases = {
        "png 1-bit 30000x30000 (900 Mpx, complete)": (png_bomb(30000), 413, "too_large"),
        "png 65535x65535 header": (png_header_bomb(65535, 65535), 413, "too_large"),
        "png 1 x 2^31-1 header": (png_header_bomb(1, 2**31 - 1), 413, "too_large"),
        f"png just over the limit ({over}x{over})": (png_bomb(over), 413, "too_large"),
        "jpeg claiming 65500x65500": (jpeg_with_size(65500, 65500), 413, "too_large"),
        f"jpeg claiming {over}x{over}": (jpeg_with_size(over, over), 413, "too_large"),
        "png with a 256 MiB zTXt chunk": (ztxt_bomb(), 400, "bad_image"),
    }
    return cases


def within_limit_canvas(max_pixels: int = 40_000_000) -> bytes:
    """The most expensive image the server accepts: a transparent RGBA canvas at the pixel limit."""
    side = int((max_pixels * 0.95) ** 0.5)
    img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(img).line((side // 3, side // 5, side // 2, side * 4 // 5), fill=(0, 0, 0, 255), width=side // 25)
    return save(img, "PNG", compress_level=1)
