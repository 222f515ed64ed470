"""The one synthetic skin photo of the tests and the benchmark (``bench/harness.py`` loads this file).

A textured, skin-toned picture with an off-centre dark spot and a darker band along the top edge:
it passes the quality checks like a real close-up, and it is not symmetric under any rotation or
flip, so orientation bugs show. Deterministic for a given size and seed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def skin_photo(size: tuple[int, int] = (160, 120), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([200 + 30 * np.sin(xx / 7), 150 + 25 * np.cos(yy / 5),
                     120 + 20 * np.sin((xx + yy) / 9)], -1)
    spot = ((xx - w / 3) ** 2 + (yy - h / 3) ** 2) < (min(w, h) / 5) ** 2
    base[spot] *= 0.4
    base[: h // 6, :] *= 0.8  # a darker band along the top edge
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo_bytes(mode: str = "RGB", size: tuple[int, int] = (160, 120), fmt: str = "JPEG", seed: int = 0,
                **options: object) -> bytes:
    """:func:`skin_photo` in any Pillow mode and file format (``options``: the format's save options)."""
    image = skin_photo(size, seed)
    return encode(image if mode == "RGB" else image.convert(mode), fmt, **options)
