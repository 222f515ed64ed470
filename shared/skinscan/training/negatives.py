"""Photos that are *not* skin, for tuning and testing the "not recognised" rule.

Nothing is downloaded. Three kinds of negatives, each reproducible:

* photos shipped inside registry packages: scikit-image's ``skimage/data``
  (astronaut, coffee, cat, rocket, retina, histology, text pages, ...) and
  matplotlib's ``sample_data`` (Grace Hopper portrait, ...);
* rendered documents, receipts, screenshots and charts (Pillow, matplotlib);
* synthetic textures: noise, stripes, checkerboards, wood/marble patterns.

The ``tune`` and ``test`` halves never share a source photo or a random seed,
so the rejection rate reported on ``test`` was not fitted to it.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = ("patient invoice total amount date report chart results summary meeting agenda notes page "
         "figure table revenue quarter growth order shipping address phone email account balance "
         "the of and to in for with on by from at as").split()


def package_photos() -> list[tuple[str, Path]]:
    """Image files shipped in installed packages (sorted, so the split is stable)."""
    found: list[tuple[str, Path]] = []
    try:
        import skimage

        folder = Path(skimage.__file__).parent / "data"
        found += [(f"skimage/{p.name}", p) for p in folder.iterdir()
                  if p.suffix.lower() in (".png", ".jpg") and p.stat().st_size > 4000]
    except ImportError:
        pass
    try:
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "sample_data"
        found += [(f"matplotlib/{p.name}", p) for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg")]
    except ImportError:
        pass
    return sorted(found)


def _crops(image: Image.Image, rng: random.Random, count: int) -> Iterator[Image.Image]:
    yield image
    width, height = image.size
    for _ in range(count):
        scale = rng.uniform(0.35, 0.8)
        side = int(min(width, height) * scale)
        left, top = rng.randint(0, width - side), rng.randint(0, height - side)
        yield image.crop((left, top, left + side, top + side))


def _document(rng: random.Random) -> Image.Image:
    width, height = rng.choice([(620, 877), (800, 600), (480, 900), (700, 700)])
    paper = tuple(rng.randint(235, 255) for _ in range(3))
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=rng.choice([14, 16, 20, 26]))
    y = rng.randint(20, 60)
    while y < height - 30:
        if rng.random() < 0.12:  # a coloured banner, logo or table row
            colour = tuple(rng.randint(0, 200) for _ in range(3))
            draw.rectangle((20, y, width - 20, y + rng.randint(20, 60)), fill=colour)
        else:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            ink = tuple(rng.randint(0, 80) for _ in range(3))
            draw.text((rng.randint(20, 60), y), line, fill=ink, font=font)
        y += rng.randint(22, 48)
    return image


def _chart(rng: random.Random) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(rng.uniform(4, 7), rng.uniform(3, 5)), dpi=80)
    kind = rng.choice(["bar", "line", "pie", "scatter"])
    values = [rng.uniform(1, 10) for _ in range(rng.randint(3, 8))]
    if kind == "bar":
        axes.bar(range(len(values)), values, color=[f"C{i}" for i in range(len(values))])
    elif kind == "line":
        axes.plot(np.cumsum([rng.gauss(0, 1) for _ in range(50)]), lw=2)
        axes.grid(True)
    elif kind == "pie":
        axes.pie(values, labels=[rng.choice(WORDS) for _ in values])
    else:
        axes.scatter([rng.random() for _ in range(80)], [rng.random() for _ in range(80)],
                     c=[rng.random() for _ in range(80)])
    axes.set_title(" ".join(rng.choice(WORDS) for _ in range(3)))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _texture(rng: random.Random) -> Image.Image:
    size = rng.choice([160, 224, 320])
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.choice(["noise", "stripes", "checker", "wood", "blobs"])
    colour_a = np.array([rng.randint(0, 255) for _ in range(3)], np.float32)
    colour_b = np.array([rng.randint(0, 255) for _ in range(3)], np.float32)
    noise = np.random.default_rng(rng.randint(0, 1 << 30)).random((size, size)).astype(np.float32)
    if kind == "noise":
        mix = noise
    elif kind == "stripes":
        mix = 0.5 + 0.5 * np.sin((x * rng.uniform(-1, 1) + y) / rng.uniform(2, 12))
    elif kind == "checker":
        step = rng.randint(8, 40)
        mix = ((x // step + y // step) % 2).astype(np.float32)
    elif kind == "wood":
        radius = np.hypot(x - size * rng.random(), y - size * rng.random())
        mix = 0.5 + 0.5 * np.sin(radius / rng.uniform(3, 9) + 3 * noise)
    else:
        mix = np.zeros_like(x)
        for _ in range(rng.randint(3, 12)):
            cx, cy, r = size * rng.random(), size * rng.random(), rng.uniform(5, size / 4)
            mix = np.maximum(mix, (np.hypot(x - cx, y - cy) < r).astype(np.float32))
    pixels = colour_a * (1 - mix[..., None]) + colour_b * mix[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def non_skin_images(part: str, per_kind: int = 40, crops_per_photo: int = 3) -> list[tuple[str, Image.Image]]:
    """The ``tune`` or ``test`` half of the negatives, as ``(name, RGB image)`` pairs."""
    if part not in ("tune", "test"):
        raise ValueError("part is 'tune' or 'test'")
    offset = 0 if part == "tune" else 1
    rng = random.Random(1000 + offset)
    images: list[tuple[str, Image.Image]] = []
    for name, path in package_photos()[offset::2]:
        photo = Image.open(path).convert("RGB")
        images += [(f"{name}#{i}", crop) for i, crop in enumerate(_crops(photo, rng, crops_per_photo))]
    for kind, make in (("document", _document), ("chart", _chart), ("texture", _texture)):
        images += [(f"{kind}-{part}-{i}", make(rng)) for i in range(per_kind)]
    return images
