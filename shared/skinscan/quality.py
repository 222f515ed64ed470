"""Cheap checks that a photo is usable at all: big enough, lit, in focus.

They run before the network so that an obviously unusable photo gets retake
advice instead of a confident disease name. Thresholds live in the manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

DEFAULT_QUALITY = {"min_side": 64, "min_brightness": 25.0, "max_brightness": 250.0,
                   "min_sharpness": 4.0, "analysis_size": 256}


def measure(image: Image.Image, analysis_size: int = 256) -> dict[str, float]:
    """Brightness (mean luma 0-255) and sharpness (Laplacian variance at a fixed size)."""
    grey = image.convert("L")
    grey.thumbnail((analysis_size, analysis_size), Image.BILINEAR)
    pixels = np.asarray(grey, dtype=np.float32)
    laplacian = (pixels[1:-1, :-2] + pixels[1:-1, 2:] + pixels[:-2, 1:-1] + pixels[2:, 1:-1]
                 - 4 * pixels[1:-1, 1:-1]) if min(pixels.shape) >= 3 else np.zeros(1)
    return {"min_side": float(min(image.size)), "brightness": float(pixels.mean()),
            "sharpness": float(laplacian.var())}


def problem(image: Image.Image, rules: dict[str, Any]) -> str | None:
    """The first reason the photo is unusable, or ``None``."""
    if min(image.size) < rules["min_side"]:
        return "too_small"
    figures = measure(image, int(rules.get("analysis_size", 256)))
    if figures["brightness"] < rules["min_brightness"]:
        return "too_dark"
    if figures["brightness"] > rules["max_brightness"]:
        return "too_bright"
    if figures["sharpness"] < rules["min_sharpness"]:
        return "too_blurry"
    return None
