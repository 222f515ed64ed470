"""Cheap checks that a photo is usable at all: big enough, lit, in focus.

They run before the network so that an obviously unusable photo gets retake
advice instead of a confident disease name. Thresholds live in the manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .contract import RetakeReason

DEFAULT_QUALITY = {"min_side": 64, "min_brightness": 25.0, "max_brightness": 250.0,
                   "min_sharpness": 4.0, "min_colourfulness": 3.0, "analysis_size": 256}


def measure(image: Image.Image, analysis_size: int = 256) -> dict[str, float]:
    """Brightness (mean luma 0-255), sharpness (Laplacian variance) and colourfulness.

    Measured on a copy scaled to a fixed size so that the figures do not
    depend on the camera's resolution. Colourfulness is Hasler and
    Suesstrunk's measure: about 0 for black-and-white images, 15-100 for
    photos of skin.

    :func:`skinscan.imaging.decode` hands over images already reduced near the
    size the caller needs; a larger one is first box-reduced to no less than
    four times the analysis size (in place of a full-size copy).
    """
    factor = min(image.size) // (4 * analysis_size)
    small = image.reduce(factor) if factor > 1 else image.copy()
    small.thumbnail((analysis_size, analysis_size), Image.Resampling.BILINEAR)
    rgb = np.asarray(small.convert("RGB"), dtype=np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    pixels = np.asarray(small.convert("L"), dtype=np.float32)
    laplacian = (pixels[1:-1, :-2] + pixels[1:-1, 2:] + pixels[:-2, 1:-1] + pixels[2:, 1:-1]
                 - 4 * pixels[1:-1, 1:-1]) if min(pixels.shape) >= 3 else np.zeros(1)
    return {"min_side": float(min(image.size)), "brightness": float(pixels.mean()),
            "sharpness": float(laplacian.var()), "colourfulness": colourfulness}


def problem(figures: dict[str, float], rules: dict[str, Any]) -> RetakeReason | None:
    """The first reason a photo with these :func:`measure` figures is unusable, or ``None``."""
    if figures["min_side"] < rules["min_side"]:
        return "too_small"
    if figures["brightness"] < rules["min_brightness"]:
        return "too_dark"
    if figures["brightness"] > rules["max_brightness"]:
        return "too_bright"
    if figures["sharpness"] < rules["min_sharpness"]:
        return "too_blurry"
    if figures["colourfulness"] < rules["min_colourfulness"]:
        return "no_colour"
    return None
