"""Image decoding and pre-processing: the one place pixels are touched.

Every way in (function, Lambda, page, bot, CLI, training, evaluation) goes
through :func:`decode` and :func:`to_model_input`, so the model always sees
images prepared exactly as it was trained.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A phone photo is ~12-50 megapixels; anything far beyond that is a
# decompression bomb, not a photo. ``decode`` refuses it from the header alone.
MAX_PIXELS = 80_000_000

# The formats we promise (see the not_an_image message). Everything else Pillow could open
# (EPS via Ghostscript, PSD, FITS, ICO, TGA, ...) is attack surface a photo never needs.
# (Phones' MPO files are opened by the JPEG entry.)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def configure_process() -> None:
    """Process-wide Pillow, warnings and logging state; each entry point calls it once at start.

    Importing :mod:`skinscan` changes no global state. :func:`decode` is safe without this
    (it checks the pixel count itself, because warning filters are global state that other
    threads or test runners may change under us); this adds defence in depth for any other
    Pillow use in the process and keeps uploads out of the logs.
    """
    # Pillow's own limit matches ours, and its warning between 1x and 2x the limit is an error.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    # Pillow's DEBUG logging prints EXIF values (GPS position, names, comments) of every upload
    # it reads; uploads must never reach a log, whatever level the app runs at.
    pil = logging.getLogger("PIL")
    pil.setLevel(max(pil.level, logging.INFO))


class ImageError(ValueError):
    """The bytes are not an image we can read. ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    images use their first frame. ``draft_size`` lets JPEG decoding skip detail
    we would throw away anyway, which makes 12 MP photos cheap.
    """
    if not data:
        raise ImageError("empty_image", "The upload is empty.")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        if image.width * image.height > MAX_PIXELS:  # before a single pixel is decoded
            raise Image.DecompressionBombError(f"{image.width} x {image.height}")
        if draft_size and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image_too_large", "The image has too many pixels to be a photo.") from None
    except UnidentifiedImageError:
        raise ImageError("not_an_image", "The upload is not an image format we can read "
                         "(use JPEG, PNG, WebP, GIF, BMP or TIFF).") from None
    except Exception:  # Pillow's plugins raise many kinds of error on hostile input.
        raise ImageError("corrupt_image", "The image file is damaged or incomplete.") from None
    if min(image.size) < 1:
        raise ImageError("corrupt_image", "The image has no pixels.")
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale the range down to 8 bits instead of clipping.
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        scale = 255.0 / (65535.0 if top > 255 else 255.0)
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, as a viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def square_pixels(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` x ``size``; uint8 HxWx3.

    Cropping rather than squashing keeps lesion shape; people centre the
    lesion, and training uses the same crop.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def to_model_input(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """A batch of one, float32, ready for the network."""
    pixels = square_pixels(image, preprocessing.size).astype(np.float32)
    return preprocessing.normalize(pixels)[np.newaxis].astype(np.float32)
