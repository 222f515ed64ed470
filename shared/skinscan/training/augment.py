"""Training-time augmentation that hides the photo's *style* from the network.

In skin9 the camera type is confounded with the class (rashes exist only as
camera photos, most moles only as dermoscopy), so a network can learn "phone
photo => rash". These transforms make style an unreliable cue: dermoscope
vignettes are added to camera photos and cropped away from dermoscopy, lesions
are zoomed out to fill only part of the frame as in phone photos, and blur,
sensor noise, JPEG artefacts, lighting and colour casts vary freely.

Pure numpy + Pillow, so the same code feeds Keras on the TensorFlow backend
(CPU here) and on the PyTorch backend (the GPU machine).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class AugmentConfig:
    style: bool = True  # vignettes, zoom-out, blur, noise, JPEG, strong colour casts
    zoom_in: float = 0.55  # probability of a random crop (35-100% of the area)
    zoom_out: float = 0.25  # probability of shrinking the photo inside reflected skin
    vignette: float = 0.15
    blur: float = 0.25
    noise: float = 0.25
    jpeg: float = 0.3
    grey_world: float = 0.1


def augment(pixels: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """One augmented copy of a square uint8 RGB image, same size."""
    size = pixels.shape[0]
    image = Image.fromarray(pixels)
    roll = rng.random()
    if roll < config.zoom_in:
        image = _random_crop(image, rng, size)
    elif config.style and roll < config.zoom_in + config.zoom_out:
        image = Image.fromarray(_zoom_out(np.asarray(image), rng))
    if config.style and rng.random() < config.blur:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
    if config.style and rng.random() < config.jpeg:
        image = _jpeg(image, int(rng.integers(25, 91)))
    x = np.asarray(image, dtype=np.float32)
    x = np.rot90(x, int(rng.integers(4)))
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = _colour(x, rng, strong=config.style)
    if config.style and rng.random() < config.grey_world:
        x = x * (x.mean() / np.maximum(x.reshape(-1, 3).mean(axis=0), 1.0))
    if config.style and rng.random() < config.noise:
        x = x + rng.normal(0.0, rng.uniform(2.0, 10.0), x.shape).astype(np.float32)
    if config.style and rng.random() < config.vignette:
        x = x * _circle_mask(size, rng)[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)


def _random_crop(image: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    area = rng.uniform(0.35, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = min(1.0, np.sqrt(area * aspect)) * size
    h = min(1.0, np.sqrt(area / aspect)) * size
    left, top = rng.uniform(0, size - w), rng.uniform(0, size - h)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))


def _zoom_out(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The lesion shrinks to 45-85% of the frame; the border is the photo's own skin, mirrored."""
    size = pixels.shape[0]
    inner = int(size * rng.uniform(0.45, 0.85))
    small = np.asarray(Image.fromarray(pixels).resize((inner, inner), Image.Resampling.BILINEAR))
    top, left = (int(rng.integers(0, size - inner + 1)) for _ in range(2))
    padding = ((top, size - inner - top), (left, size - inner - left), (0, 0))
    return np.pad(small, padding, mode="symmetric")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _colour(x: np.ndarray, rng: np.random.Generator, strong: bool) -> np.ndarray:
    spread = 0.15 if strong else 0.08
    x = x * rng.uniform(0.75, 1.25) * rng.uniform(1 - spread, 1 + spread, 3).astype(np.float32)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.75, 1.25) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * rng.uniform(0.7, 1.3) + grey
    if strong:
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** rng.uniform(0.8, 1.25)
    return x.astype(np.float32)


def _circle_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """A dermoscope's round field of view: black outside, a soft edge."""
    radius = size * rng.uniform(0.42, 0.62)
    cy, cx = size / 2 + rng.uniform(-0.06, 0.06, 2) * size
    yy, xx = np.mgrid[0:size, 0:size]
    distance = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return np.clip((radius - distance) / (0.04 * size) + 0.5, 0.0, 1.0).astype(np.float32)
