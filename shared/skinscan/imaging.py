"""Image decoding and pre-processing: the one place pixels are touched.

Every way in (function, Lambda, page, bot, CLI, training, evaluation) goes
through :func:`decode` and :func:`to_model_input`, so the model always sees
images prepared exactly as it was trained.
"""

from __future__ import annotations

import ctypes
import io
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from PIL import Image, UnidentifiedImageError

from .contract import ERROR_MESSAGES, NO_PIXELS, ErrorCode

# A phone photo is ~12-50 megapixels; anything far beyond that is a
# decompression bomb, not a photo. ``decode`` refuses it from the header alone.
MAX_PIXELS = 80_000_000

# What decoding one image may hold in memory, also checked from the header (decode_cost): the
# bitmap Pillow fills (a JPEG at its draft scale; PNG, WebP, TIFF, BMP and GIF cannot be decoded
# smaller, and Pillow keeps 4 bytes a colour pixel) plus the decoder's own buffers. A file of a
# few hundred kB can claim tens of megapixels, and must not cost gigabytes (issue 19). With the
# shipped model a request then peaks near 300 MB, three at once near 500 (bench/memory.py). In
# megapixels (`python bench/memory.py --limits`, README "Limits"): a baseline JPEG, as cameras
# write, up to MAX_PIXELS (read at 1/8 scale); RGB PNG 41, RGBA PNG 36, progressive JPEG 28-55,
# 16-bit grey 73, WebP 10.
MAX_DECODE_BYTES = 160 * 1024 * 1024

# Decodes in flight, all threads together, hold at most this much: a threaded server (gunicorn
# under functions-framework runs 4 threads a core) works on two of the largest images at once,
# and further ones wait for memory instead of multiplying it. Two cores gain nothing from more.
DECODE_BUDGET_BYTES = 2 * MAX_DECODE_BYTES

# Images are converted to 8 bits a band of rows at a time, so no second full-size bitmap
# (a float copy, a premultiplied-alpha copy) ever exists; about this many pixels a band.
BAND_PIXELS = 1 << 20

# The formats we promise (see the not_an_image message). Everything else Pillow could open
# (EPS via Ghostscript, PSD, FITS, ICO, TGA, ...) is attack surface a photo never needs.
# (Phones' MPO files are opened by the JPEG entry.)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def configure_process() -> None:
    """Process-wide Pillow, warnings and logging state; each entry point calls it once at start.

    Importing :mod:`skinscan` changes no global state. :func:`decode` is safe without this
    (it checks the pixel count and the memory a decode will hold itself, because warning
    filters are global state that other threads or test runners may change under us); this
    adds defence in depth for any other Pillow use in the process, has memory freed after a
    large image go back to the system, and keeps uploads out of the logs.
    """
    # Pillow's own limit matches ours, and its warning between 1x and 2x the limit is an error.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    _give_large_buffers_back()
    # Pillow's DEBUG logging prints EXIF values (GPS position, names, comments) of every upload
    # it reads; uploads must never reach a log, whatever level the app runs at.
    pil = logging.getLogger("PIL")
    pil.setLevel(max(pil.level, logging.INFO))


def _give_large_buffers_back() -> None:
    """Have glibc return every freed buffer of 1 MiB or more to the system at once.

    By default glibc raises its mmap threshold after the first large free (up to 32 MiB), so a
    decoded bitmap's 16 MiB blocks come from the heap and, once freed, stay resident: a server
    that decoded one large image kept ~200 MB more for good, and the next request's peak started
    there (bench/memory.py, issue 19). A fixed threshold maps large buffers and unmaps them on free.
    Elsewhere (macOS, musl) there is no ``mallopt`` to call, and nothing to do.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold = -3  # <malloc.h>
    mallopt(ctypes.c_int(m_mmap_threshold), ctypes.c_int(1 << 20))


class ImageError(ValueError):
    """The bytes are not an image we can read. ``code`` is machine-readable (answered 400)."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message or ERROR_MESSAGES[code]
        super().__init__(self.message)


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model input: ``(rgb_uint8 / 255 - mean) / std``.

    Stored in the model's manifest so serving never guesses what training did.
    """

    size: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std),
                "resize": "center-square-crop, bilinear"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        return cls(size=int(data["size"]), mean=tuple(data["mean"]), std=tuple(data["std"]))

    def normalize(self, pixels: Any) -> Any:
        """Scale uint8 RGB pixels to model units.

        Written with plain arithmetic so the same function serves numpy arrays
        at inference and TensorFlow tensors inside the training pipeline.
        """
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (pixels / np.float32(255.0) - mean) / std


def decode(data: bytes, *, draft_size: int | None = None) -> Image.Image:
    """Decode image bytes to an upright RGB Pillow image.

    EXIF orientation is applied (phones store photos sideways), and every mode
    Pillow knows (RGBA, P, L, I;16, CMYK, ...) is flattened to RGB. Animated
    images use their first frame.

    ``draft_size`` is the smallest side the caller needs: a larger image comes
    back reduced by a whole factor (a JPEG while it is decoded, to no less than
    that, which makes 12 MP photos cheap; any other format right after, in its
    own mode, before it is converted, to no less than twice that). Memory is bounded by what the header
    says the decode will hold (:data:`MAX_DECODE_BYTES`), never by a full-size
    float or RGB copy.
    """
    if not data:
        raise ImageError(ErrorCode.EMPTY_IMAGE)
    try:
        image: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
        if image.width * image.height > MAX_PIXELS:  # before a single pixel is decoded
            raise Image.DecompressionBombError(f"{image.width} x {image.height}")
        full_size = image.size
        if draft_size and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (draft_size, draft_size))
        factor = reduction_factor(image.size, draft_size)
        cost = decode_cost(image, data, full_size, factor)
        if cost > MAX_DECODE_BYTES:
            raise Image.DecompressionBombError(f"{cost} bytes to decode")
        with _in_flight.reserve(cost):
            image.load()
            orientation = image.getexif().get(ORIENTATION_TAG)  # a PNG's eXIf may follow its pixels
            image = reduced_rgb(image, factor)
        image = upright(image, orientation)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(ErrorCode.IMAGE_TOO_LARGE) from None
    except UnidentifiedImageError:
        raise ImageError(ErrorCode.NOT_AN_IMAGE) from None
    except Exception:  # Pillow's plugins raise many kinds of error on hostile input.
        raise ImageError(ErrorCode.CORRUPT_IMAGE) from None
    if min(image.size) < 1:
        raise ImageError(ErrorCode.CORRUPT_IMAGE, NO_PIXELS)
    return image


def reduction_factor(size: tuple[int, int], draft_size: int | None) -> int:
    """The whole factor that keeps the shorter side at twice ``draft_size`` or more (1: keep the size).

    Twice, so that what works on the image afterwards (the quality checks' thumbnail, the model
    input's resize) still does most of the filtering itself, as it did on the full-size image: reduced
    to just ``draft_size``, a 1536-pixel PNG measured ~10 % sharper and near-threshold photos flipped
    from "too blurry" to usable (the equivalence check of issue 19). Memory is the decoder's anyway.
    """
    return max(1, min(size) // (2 * draft_size)) if draft_size else 1


# Bytes a pixel in Pillow's memory; every other mode (RGB included) takes 4.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_START_OF_SCAN = b"\xff\xda"  # a JPEG marker; entropy-coded data escapes every 0xFF, so it is only ever a marker


def decode_cost(image: Image.Image, data: bytes, full_size: tuple[int, int], factor: int) -> int:
    """Bytes that decoding ``image`` (opened, drafted, not loaded) will hold at its peak, from its header.

    The bitmap at the size the decoder fills, the 8-bit RGB image made from it when that is a new
    one, a band in conversion, and the decoder's own buffers: libjpeg keeps every DCT coefficient
    of the *full-size* image (2 bytes each) for a JPEG of more than one scan, progressive ones
    included, whatever the draft scale; libtiff reads a whole strip or tile before unpacking it;
    WebP and GIF frames pass through buffers of their own. Each figure was checked against the
    measured peak (tests/test_memory.py).
    """
    width, height = image.size
    cost = width * height * _BYTES_PER_PIXEL.get(image.mode, 4)
    if image.mode != "RGB" or factor > 1:
        cost += -(-width // factor) * -(-height // factor) * 4
    if image.mode not in ("RGB", "L"):
        cost += BAND_PIXELS * 16  # one band being converted, numpy's temporaries included
    if image.format in ("JPEG", "MPO") and data.count(_START_OF_SCAN) > 1:
        layers = getattr(image, "layer", None) or [(0, 1, 1, 0)] * 3
        h_max, v_max = max(layer[1] for layer in layers), max(layer[2] for layer in layers)
        share = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
        cost += int(full_size[0] * full_size[1] * share * 2)
    elif image.format == "TIFF":
        tags = getattr(image, "tag_v2", {})
        bits = tags.get(258) or (8,)  # BitsPerSample: one value, or one a sample
        stored = -(-max(bits) * max(len(bits), int(tags.get(277, 1))) // 8)  # bytes a pixel in the file
        if 322 in tags and 323 in tags:  # TileWidth, TileLength
            rows, row_width = min(int(tags[323]), height), min(int(tags[322]), width)
        else:
            rows, row_width = min(int(tags.get(278, height)), height), width  # RowsPerStrip
        cost += rows * row_width * stored
    elif image.format == "WEBP":
        cost += 3 * width * height * 4  # libwebp's frame, and Pillow's copy of it, and its reading buffer (measured)
    elif image.format == "GIF":
        cost += width * height  # the frame Pillow reads into before its palette is applied (measured)
    return cost


class _DecodeBudget:
    """Bytes of decoding in flight across threads; a decode waits until its share is free."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, amount: int) -> Iterator[None]:
        amount = min(amount, self.total)  # one image alone always fits (MAX_DECODE_BYTES is smaller)
        with self._changed:
            self._changed.wait_for(lambda: self.used + amount <= self.total)
            self.used += amount
        try:
            yield
        finally:
            with self._changed:
                self.used -= amount
                self._changed.notify_all()


_in_flight = _DecodeBudget(DECODE_BUDGET_BYTES)

ORIENTATION_TAG = 0x0112
# How to turn a stored image upright for each EXIF orientation (as ImageOps.exif_transpose does).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
            7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def upright(image: Image.Image, orientation: object) -> Image.Image:
    """``image`` turned as its EXIF orientation says; applied after reducing, so it turns the small image."""
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def reduced_rgb(image: Image.Image, factor: int = 1) -> Image.Image:
    """A loaded image of any mode as 8-bit RGB, ``factor`` times smaller (Pillow's box reduction).

    Converting comes first, as when whole images were converted: 16-bit and float pixels are
    brought to 8 bits and transparency is laid on white before pixels are averaged. It is done a
    band of rows at a time, so the only full-size bitmap is the one the decoder filled.
    """
    if image.mode not in ("RGB", "L"):
        to_8bit, mode = _band_converter(image)
        width, height = image.size
        rows = max(factor, (max(1, BAND_PIXELS // width) // factor) * factor)
        out = Image.new(mode, (-(-width // factor), -(-height // factor)))
        for top in range(0, height, rows):
            band = to_8bit(image.crop((0, top, width, min(height, top + rows))))
            out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
        return out if mode == "RGB" else out.convert("RGB")
    # Averaging commutes with grey -> RGB, so both reduce as they are, without a copy.
    small = image.reduce(factor) if factor > 1 else image
    return small if small.mode == "RGB" else small.convert("RGB")


def _band_converter(image: Image.Image) -> tuple[Callable[[Image.Image], Image.Image], str]:
    """The function that turns one band of ``image`` into 8 bits, and the mode it gives ("L" or "RGB")."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale the whole image's range down to 8 bits instead of clipping,
        # through a table of every 16-bit value (exact: the values the float64 formula gave).
        levels = np.arange(65536, dtype=np.int64)
        table = (levels * 255 // 65535 if _brightest(image) > 255 else np.minimum(levels, 255)).astype(np.uint8)

        def deep_grey(band: Image.Image) -> Image.Image:
            values = np.asarray(band)
            if values.dtype.itemsize > 2:  # mode I: 32-bit, may lie outside 0..65535
                values = np.clip(values, 0, 65535)
            return Image.fromarray(table[values], "L")

        return deep_grey, "L"
    if image.mode == "F":
        def floating(band: Image.Image) -> Image.Image:
            values = np.nan_to_num(np.asarray(band, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
            return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")

        return floating, "L"
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        def on_white(band: Image.Image) -> Image.Image:
            # Transparent areas become white, as a viewer would show them. Most RGBA files are
            # opaque all over; their bands need no white behind them.
            if band.mode == "RGBA" and band.getchannel("A").getextrema()[0] == 255:
                return band.convert("RGB")
            rgba = band.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")

        return on_white, "RGB"
    return (lambda band: band.convert("RGB")), "RGB"


def _brightest(image: Image.Image) -> float:
    """The largest pixel value of a 16/32-bit grey image, read without a full-size copy."""
    try:
        return float(cast(float, image.getextrema()[1]))  # one band: (low, high)
    except ValueError:  # Pillow has no extrema for some byte orders (I;16B): a band at a time
        width, height = image.size
        rows = max(1, BAND_PIXELS // width)
        return float(max(np.asarray(image.crop((0, top, width, min(height, top + rows)))).max()
                         for top in range(0, height, rows)))


def square_pixels(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` x ``size``; uint8 HxWx3.

    Cropping rather than squashing keeps lesion shape; people centre the
    lesion, and training uses the same crop.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def to_model_input(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """A batch of one, float32, ready for the network."""
    pixels = square_pixels(image, preprocessing.size).astype(np.float32)
    batch: np.ndarray = preprocessing.normalize(pixels)[np.newaxis].astype(np.float32)
    return batch
