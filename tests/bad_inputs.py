"""A corpus of bad, odd and hostile uploads, generated on the fly (no committed binaries),
and the module-scoped fixtures the bad-input and load tests share.

Two kinds of case:

* :data:`FILES` -- what someone might pick as "the photo": screenshots, PDFs,
  truncated and broken files, decompression bombs, odd but valid images.
  Every adapter sends these: the function (raw body and multipart), the
  Lambda handler, the page's form and the bot (as a document).
* :data:`REQUESTS` -- odd HTTP requests to the function itself: wrong or
  missing content types, multipart without the field or with two files,
  bodies over the size limit.

Each case says what the function must answer: ``200`` (the input really is
an image, so a result -- possibly "not recognised, retake" -- is correct) or
a 4xx with its machine-readable code. Nothing here is ever a 5xx.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pytest
from PIL import Image

from photos import encode, skin_photo
from skinscan.contract import MAX_UPLOAD_BYTES

MB = 1024 * 1024
LIMIT = MAX_UPLOAD_BYTES  # the function's limit (skinscan.contract)
OK = None  # "expect a 200 result", in the code column


@dataclass(frozen=True)
class FileCase:
    """A file as a user (or attacker) would upload it."""

    name: str
    data: bytes
    mime: str           # what a browser / Telegram would declare for it
    filename: str
    code: str | None    # the function's error code, or OK for a 200 result
    status: int = 200   # the function's status

    @property
    def is_image(self) -> bool:
        return self.code is OK


@dataclass(frozen=True)
class RequestCase:
    """A whole HTTP request to the classify function: body plus headers."""

    name: str
    body: bytes
    content_type: str | None
    status: int
    code: str | None
    headers: dict[str, str] = field(default_factory=dict)


# -- building blocks -------------------------------------------------------------------------------
photo, save = skin_photo, encode  # the tests' one synthetic photo (tests/photos.py), and its encoder


def jpeg(size: tuple[int, int] = (160, 120), **options: object) -> bytes:
    return save(photo(size), "JPEG", quality=90, **options)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int, complete: bool = True) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` zeros: a few KB on disk.

    Built by hand (streamed through zlib) so making it never allocates the image.
    ``complete=False`` leaves the pixel data out: Pillow must refuse it from the header alone.
    """
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    idat = b""
    if complete:
        compressor = zlib.compressobj(9)
        row = b"\0" * (1 + (width + 7) // 8)
        rows_per_block = max(1, (1 << 20) // len(row))
        parts = []
        for start in range(0, height, rows_per_block):
            parts.append(compressor.compress(row * min(rows_per_block, height - start)))
        parts.append(compressor.flush())
        idat = png_chunk(b"IDAT", b"".join(parts))
    return b"\x89PNG\r\n\x1a\n" + header + idat + png_chunk(b"IEND", b"")


def gif_bomb() -> bytes:
    """A 1x1 GIF whose screen and frame claim 65535 x 65535 (4.3 gigapixels)."""
    data = bytearray(save(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen
    frame = data.index(b"\x2c")  # the image descriptor
    data[frame + 5:frame + 9] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def jpeg_bomb() -> bytes:
    """A small JPEG whose frame header claims 65500 x 65500."""
    data = bytearray(jpeg((16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 65500, 65500)
    return bytes(data)


def streamed_png(width: int, height: int, bit_depth: int, colour_type: int, row) -> bytes:
    """A PNG whose rows come from ``row(y) -> bytes``, compressed as they are made.

    The whole bitmap never exists in memory, so the corpus can hold images of tens of megapixels.
    """
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
    compressor = zlib.compressobj(9)
    parts, previous = [], None
    for y in range(height):
        current = row(y)
        # A row equal to the one above goes with PNG's "Up" filter: all zeros, next to nothing packed.
        parts.append(compressor.compress(b"\2" + bytes(len(current)) if current == previous else b"\0" + current))
        previous = current
    parts.append(compressor.flush())
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")


def _bands(side: int, period: int = 64) -> list[np.ndarray]:
    """A few float rows (0..1) of 128-pixel steps that differ band by band: not one flat colour,
    yet compressible enough that a tens-of-megapixel image fits in a few hundred kB."""
    x = np.floor(np.arange(side, dtype=np.float32) / 128) * 128 / side
    return [0.5 + 0.4 * np.sin(6.0 * x + k / 3.0) * np.cos(3.0 * x - k / 5.0) for k in range(period)]


def sixteen_bit_png_bomb(side: int = 8900) -> bytes:
    """A 16-bit greyscale PNG of ``side`` x ``side`` (8900: 79 MP, ~170 kB): decoded, 2 bytes a pixel."""
    rows = [(band * 60000).astype(">u2").tobytes() for band in _bands(side)]
    return streamed_png(side, side, 16, 0, lambda y: rows[(y // 64) % len(rows)])


def rgba_png_bomb(side: int = 8900) -> bytes:
    """An RGBA PNG of ``side`` x ``side`` (8900: 79 MP, ~300 kB): decoded, 4 bytes a pixel."""
    rows = []
    for band in _bands(side):
        rgba = np.stack([band * 230, band * 170, band * 140, np.full_like(band, 255)], -1)
        rows.append(rgba.astype(np.uint8).tobytes())
    return streamed_png(side, side, 8, 6, lambda y: rows[(y // 64) % len(rows)])


def large_jpeg_bomb(side: int = 8900, **options: object) -> bytes:
    """An RGB JPEG of ``side`` x ``side`` (8900: 79 MP, ~1.5 MB): smooth, so it compresses well.

    JPEG cannot be streamed through Pillow, so making it takes the full bitmap once (~300 MB,
    a second); the test and the benchmark make it once per run.
    """
    gradient = Image.linear_gradient("L").resize((side, side), Image.BILINEAR)
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90),
                                gradient.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    del gradient
    return save(image, "JPEG", **{"quality": 85, **options})


def float_tiff_bomb(side: int = 6000) -> bytes:
    """A 32-bit float TIFF of ``side`` x ``side`` (6000: 36 MP, ~200 kB, deflate), one strip."""
    pixels = np.empty((side, side), dtype=np.float32)
    bands = _bands(side)
    for y in range(0, side, 64):
        pixels[y:y + 64] = bands[(y // 64) % len(bands)] * 250
    return save(Image.fromarray(pixels, "F"), "TIFF", compression="tiff_adobe_deflate")


# The decoded-size bombs of issue 19: files of 0.2-1.5 MB, each under the 80 MP cap, that decode
# to tens of megapixels (they cost 1.3-2.2 GB a request before). Two are now refused from the
# header, as over skinscan.imaging.MAX_DECODE_BYTES; two are decoded within it. What each may
# cost is pinned by tests/test_memory.py and measured by bench/memory.py.
# name: (make, content type, file name, the function's error code or OK, status)
MEMORY_BOMB_KINDS = {
    "16-bit grey PNG 8900 x 8900": (sixteen_bit_png_bomb, "image/png", "deep.png", "image_too_large", 400),
    "RGBA PNG 8900 x 8900": (rgba_png_bomb, "image/png", "screen.png", "image_too_large", 400),
    "RGB JPEG 8900 x 8900": (large_jpeg_bomb, "image/jpeg", "huge.jpg", OK, 200),
    "float TIFF 6000 x 6000": (float_tiff_bomb, "image/tiff", "float.tif", OK, 200),
}


# The costliest uploads the limits let through, near MAX_DECODE_BYTES (name: make, content type).
AT_THE_LIMIT = {
    "RGBA PNG 6000 x 6000": (lambda: rgba_png_bomb(6000), "image/png"),
    "progressive JPEG 5000 x 5000, 4:4:4": (lambda: large_jpeg_bomb(5000, progressive=True, subsampling=0),
                                            "image/jpeg"),
}


@cache
def memory_bombs() -> tuple[FileCase, ...]:
    """The decoded-size bombs as corpus cases (a few seconds to make, once per process)."""
    return tuple(FileCase(f"decoded-size bomb: {name}", make(), mime, filename, code, status)
                 for name, (make, mime, filename, code, status) in MEMORY_BOMB_KINDS.items())


def exif_jpeg(orientation: int | None = None, gps: bool = False, marker: str = "") -> bytes:
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    if marker:
        exif[0x010E] = marker  # ImageDescription
        exif[0x013B] = marker  # Artist
    if gps:
        exif[0x8825] = {1: "N", 2: (51.0, 30.0, 26.4), 3: "W", 4: (0.0, 7.0, 39.9)}
    return save(photo(), "JPEG", quality=90, exif=exif)


def corrupt_exif_jpeg() -> bytes:
    """A fine JPEG whose EXIF block is nonsense (some cameras and editors write such)."""
    data = jpeg()
    app1 = b"Exif\0\0" + b"MM\0\x2a\0\0\0\x08" + b"\xff" * 40
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def animated_gif() -> bytes:
    frames = [photo(seed=i).convert("P") for i in range(3)]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def palette_png_with_transparency() -> bytes:
    image = photo().convert("P")
    return save(image, "PNG", transparency=0)


def sixteen_bit_png() -> bytes:
    pixels = (np.asarray(photo().convert("L"), dtype=np.uint16) * 257)
    return save(Image.fromarray(pixels), "PNG")  # mode I;16


def zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", jpeg())
    return buffer.getvalue()


PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")
HTML = b"<!doctype html><html><body><script>alert(1)</script><img src=x onerror=alert(2)></body></html>"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
       b'<circle cx="50" cy="50" r="40" fill="brown"/></svg>')
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n/Helvetica findfont 12 scalefont setfont\nshowpage\n"


# -- the corpus ------------------------------------------------------------------------------------
@cache
def files() -> tuple[FileCase, ...]:
    good = jpeg()
    png = save(photo(), "PNG")
    rng = np.random.default_rng(7)
    cases = [
        # not images at all
        FileCase("empty file", b"", "image/jpeg", "empty.jpg", "empty_image", 400),
        FileCase("a few random bytes", bytes(rng.integers(0, 256, 7, dtype=np.uint8)), "image/jpeg",
                 "x.jpg", "not_an_image", 400),
        FileCase("64 KB of random bytes", os.urandom(64 * 1024), "application/octet-stream", "blob",
                 "not_an_image", 400),
        FileCase("zero bytes", b"\0" * 4096, "image/png", "zeros.png", "not_an_image", 400),
        FileCase("plain text", "a note about my mole, ünïcode ✓\n".encode() * 20, "image/jpeg",
                 "note.jpg", "not_an_image", 400),
        FileCase("HTML page", HTML, "image/png", "page.png", "not_an_image", 400),
        FileCase("PDF", PDF, "image/jpeg", "scan.jpg", "not_an_image", 400),
        FileCase("ZIP archive", zip_file(), "image/jpeg", "photos.jpg", "not_an_image", 400),
        FileCase("SVG drawing", SVG, "image/svg+xml", "drawing.svg", "not_an_image", 400),
        FileCase("PostScript (must never reach Ghostscript)", EPS, "image/x-eps", "x.eps",
                 "not_an_image", 400),
        FileCase("ICO icon (not a format we promise)", save(photo((64, 64)), "ICO"), "image/x-icon",
                 "favicon.ico", "not_an_image", 400),
        FileCase("TGA image (not a format we promise)", save(photo(), "TGA"), "image/x-tga", "x.tga",
                 "not_an_image", 400),
        # broken images
        FileCase("JPEG, headers only", good[:200], "image/jpeg", "cut.jpg", "corrupt_image", 400),
        FileCase("JPEG, cut in half", good[: len(good) // 2], "image/jpeg", "half.jpg", "corrupt_image", 400),
        FileCase("PNG, cut in half", png[: len(png) // 2], "image/png", "half.png", "corrupt_image", 400),
        FileCase("PNG, damaged pixel data", png[:100] + bytes(b ^ 0x55 for b in png[100:400]) + png[400:],
                 "image/png", "bad.png", "corrupt_image", 400),
        FileCase("PNG signature, nothing else", b"\x89PNG\r\n\x1a\n", "image/png", "sig.png",
                 "not_an_image", 400),
        # decompression bombs: tiny files that claim gigapixels
        FileCase("PNG bomb, 20000 x 20000 header", png_bomb(20000, 20000, complete=False), "image/png",
                 "bomb.png", "image_too_large", 400),
        FileCase("PNG bomb, 10000 x 9000, complete", png_bomb(10000, 9000), "image/png", "bomb9k.png",
                 "image_too_large", 400),
        FileCase("GIF bomb, 65535 x 65535", gif_bomb(), "image/gif", "bomb.gif", "image_too_large", 400),
        FileCase("JPEG bomb, 65500 x 65500", jpeg_bomb(), "image/jpeg", "bomb.jpg", "image_too_large", 400),
        *memory_bombs(),
        # odd but valid images: a result (often "not recognised, please retake") is the right answer
        FileCase("1 x 1 JPEG", save(Image.new("RGB", (1, 1), (200, 150, 120)), "JPEG"), "image/jpeg",
                 "dot.jpg", OK),
        FileCase("1 x 1 transparent PNG", save(Image.new("RGBA", (1, 1), (0, 0, 0, 0)), "PNG"),
                 "image/png", "dot.png", OK),
        FileCase("extreme aspect ratio 8000 x 1", save(photo((8000, 1)), "PNG"), "image/png",
                 "line.png", OK),
        FileCase("extreme aspect ratio 2 x 6000", save(photo((2, 6000)), "JPEG"), "image/jpeg",
                 "column.jpg", OK),
        FileCase("CMYK JPEG", save(photo().convert("CMYK"), "JPEG"), "image/jpeg", "print.jpg", OK),
        FileCase("16-bit greyscale PNG", sixteen_bit_png(), "image/png", "deep.png", OK),
        FileCase("palette PNG with transparency", palette_png_with_transparency(), "image/png",
                 "palette.png", OK),
        FileCase("RGBA PNG screenshot", save(photo((400, 300)).convert("RGBA"), "PNG"), "image/png",
                 "screenshot.png", OK),
        FileCase("1-bit BMP", save(photo().convert("1"), "BMP"), "image/bmp", "scan.bmp", OK),
        FileCase("float TIFF", save(photo().convert("F"), "TIFF"), "image/tiff", "float.tif", OK),
        FileCase("animated GIF", animated_gif(), "image/gif", "meme.gif", OK),
        FileCase("WebP", save(photo(), "WEBP"), "image/webp", "photo.webp", OK),
        FileCase("lossless WebP with alpha", save(photo().convert("RGBA"), "WEBP", lossless=True),
                 "image/webp", "alpha.webp", OK),
        FileCase("EXIF-rotated JPEG", exif_jpeg(orientation=6), "image/jpeg", "rotated.jpg", OK),
        FileCase("JPEG with GPS EXIF", exif_jpeg(gps=True), "image/jpeg", "gps.jpg", OK),
        FileCase("JPEG with a corrupt EXIF block", corrupt_exif_jpeg(), "image/jpeg", "oddexif.jpg", OK),
        FileCase("progressive JPEG", save(photo((640, 480)), "JPEG", progressive=True), "image/jpeg",
                 "progressive.jpg", OK),
        FileCase("MPO (a phone's multi-picture JPEG)",
                 save(photo(), "MPO", save_all=True, append_images=[photo(seed=1)]), "image/jpeg",
                 "portrait.jpg", OK),
        FileCase("JPEG with a ZIP appended (polyglot)", good + zip_file(), "image/jpeg", "poly.jpg", OK),
        FileCase("JPEG declared as PNG", good, "image/png", "wrong.png", OK),
    ]
    return tuple(cases)


def multipart(parts: list[tuple[str, str | None, bytes, str | None]], boundary: str = "b0und4ry") -> tuple[bytes, str]:
    """A multipart/form-data body from ``(field, filename, data, content_type)`` parts."""
    chunks = []
    for name, filename, data, content_type in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


@cache
def requests() -> tuple[RequestCase, ...]:
    good = jpeg()
    two, two_type = multipart([("image", "a.jpg", good, "image/jpeg"), ("image", "b.jpg", good, "image/jpeg")])
    other, other_type = multipart([("photo", "a.jpg", good, "image/jpeg")])
    text_field, text_type = multipart([("image", None, b"not a file", None)])
    only_end, only_end_type = multipart([])
    over, over_type = multipart([("image", "big.jpg", b"\xff" * (LIMIT + 1), "image/jpeg")])
    return (
        RequestCase("no content type", good, None, 415, "unsupported_media_type"),
        RequestCase("text/plain", good, "text/plain", 415, "unsupported_media_type"),
        RequestCase("application/json", b'{"image": "aGVsbG8="}', "application/json", 415,
                    "unsupported_media_type"),
        RequestCase("urlencoded form", b"image=%FF%D8%FF", "application/x-www-form-urlencoded", 415,
                    "unsupported_media_type"),
        RequestCase("garbage content type", good, "\x01;;;=/", 415, "unsupported_media_type"),
        RequestCase("octet-stream photo", good, "application/octet-stream", 200, OK),
        RequestCase("content type with parameters, upper case", good, "IMAGE/JPEG; charset=binary; q=1",
                    200, OK),
        RequestCase("multipart without the image field", other, other_type, 400, "missing_image"),
        RequestCase("multipart with two images", two, two_type, 400, "too_many_images"),
        RequestCase("multipart with image as a text field", text_field, text_type, 400, "missing_image"),
        RequestCase("multipart with no parts", only_end, only_end_type, 400, "missing_image"),
        RequestCase("multipart without a boundary", good, "multipart/form-data", 400, "missing_image"),
        RequestCase("multipart with a garbage body", os.urandom(2048), "multipart/form-data; boundary=xyz",
                    400, "missing_image"),
        RequestCase("multipart, file just over 10 MB", over, over_type, 413, "too_large"),
        RequestCase("raw body, 10 MB + 1 byte", b"\xff\xd8" + b"\0" * (LIMIT - 1), "image/jpeg", 413,
                    "too_large"),
        RequestCase("raw body, exactly 10 MB of junk", b"\0" * LIMIT, "image/jpeg", 400, "not_an_image"),
    )


def big_camera_file() -> bytes:
    """A "50 MB camera file" (mostly padding after a real JPEG)."""
    return jpeg() + b"\0" * (50 * MB)


def kinds() -> list[str]:
    return [case.name for case in files()] + [case.name for case in requests()]


# -- fixtures shared by the bad-input and load test modules (import them by name) ------------------------------
@pytest.fixture(scope="module")
def fixture_service(fixture_model):
    """The fixture model (fake backend) loaded once per module through the real store.

    conftest's ``use_model`` reloads the model for every test; these modules only ever
    serve the fixture model. The service is reset when the module ends,
    so other modules start as clean as with ``use_model``.
    """
    from skinscan import service

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKINSCAN_MODEL_URI", str(fixture_model))
        service.reset()
        service.get_classifier()
        yield fixture_model
    service.reset()


@pytest.fixture(scope="module")
def served(fixture_service):
    """The real classify function on loopback for a whole module; yields its base URL."""
    from conftest import classify_app, serving

    with serving(classify_app()) as url:
        yield url
