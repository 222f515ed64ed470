"""Pack the training photos into one small file that can travel to a GPU machine.

The photos live outside the repository and the device machine only receives
the working tree plus a few ignored "carried" paths (64 MiB in all, see
``infra/gpu/README.md``). A pack holds the train and validation photos of a
stored split, **decoded exactly as serving decodes them** (EXIF orientation,
RGB, centre square, bilinear resize: :func:`skinscan.training.data.decode_sample`)
and then re-encoded compactly (WebP or JPEG at a measured quality), together
with everything training needs to know about each photo: label, relative path,
lesion id, photo type, source and skin tone class, plus the split file itself.

The GPU side decodes the pack once into memory (:func:`read_pack`, threads)::

    python -m skinscan.training.pack --data ../shared/data/skin9 \\
        --split shared/skinscan/models/skinscan-densenet121.split.json --size 128 --out runs/gpu/pack.npz

The file is a plain compressed ``.npz`` (no pickles): ``blob`` (every encoded photo, end
to end), ``offsets``, and one array per field.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import data as dataset

PACK_FORMAT = "skinscan-pack-1"
CODECS = ("webp", "jpeg")
DEFAULT_PARTS = ("train", "val")


@dataclass
class Pack:
    """A pack decoded into memory: uint8 pixels (N, size, size, 3) and per-photo fields."""

    pixels: np.ndarray
    samples: list[dataset.Sample]
    parts: np.ndarray  # "train" / "val" for each photo
    sources: list[str]
    size: int
    split: dict  # the split file's JSON, test paths included
    info: dict

    def select(self, part: str) -> tuple[np.ndarray, list[dataset.Sample]]:
        index = np.flatnonzero(self.parts == part)
        return self.pixels[index], [self.samples[i] for i in index]


def encode(pixels: np.ndarray, codec: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if codec == "webp":
        image.save(buffer, "WEBP", quality=quality, method=6)
    elif codec == "jpeg":
        image.save(buffer, "JPEG", quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
    else:
        raise ValueError(f"unknown codec {codec!r} (use one of {CODECS})")
    return buffer.getvalue()


def decode_photo(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def read_sources(root: Path) -> dict[str, str]:
    return {path: row.get("source", "") for path, row in dataset.read_metadata(root).items()}


def decode_all(root: Path, samples: list[dataset.Sample], size: int, cache_dir: Path | None,
               workers: int = 2) -> np.ndarray:
    """Serving's decode for every sample; reuses (and fills) training's pixel cache when given."""
    if cache_dir:
        from .train import load_cached  # the same cache `skinscan train --cache` keeps

        return load_cached(root, samples, size, cache_dir)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return np.stack(list(pool.map(lambda s: dataset.decode_sample(root, s, size), samples)))


def subset(samples: list[dataset.Sample], limit: int | None, seed: int) -> list[dataset.Sample]:
    """At most ``limit`` samples spread over classes and photo types, keeping two-view lesions whole."""
    if not limit or len(samples) <= limit:
        return samples
    rng = np.random.default_rng(seed)
    groups: dict[str, list[dataset.Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.group, []).append(sample)
    strata: dict[tuple, list[str]] = {}
    for key, members in groups.items():
        types = "+".join(sorted({m.photo_type for m in members}))
        strata.setdefault((members[0].label, types), []).append(key)
    order = {k: list(rng.permutation(sorted(v))) for k, v in sorted(strata.items())}
    chosen: list[dataset.Sample] = []
    while len(chosen) < limit and any(order.values()):
        for key in list(order):
            if order[key] and len(chosen) < limit:
                chosen += groups[order[key].pop()]
    keep = {s.path for s in chosen}
    return [s for s in samples if s.path in keep]


def build_pack(root: Path, split_file: Path, size: int, out: Path, *, codec: str = "webp", quality: int = 90,
               parts: tuple[str, ...] = DEFAULT_PARTS, cache_dir: Path | None = None, limit: int | None = None,
               seed: int = 42, workers: int = 2) -> dict:
    """Write the pack; returns what was measured (bytes per photo, PSNR against serving's decode)."""
    started = time.time()
    root, split_file, out = Path(root), Path(split_file), Path(out)
    split = dataset.load_split(split_file, root)
    sources = read_sources(root)
    samples, part_names = [], []
    for part in parts:
        members = subset(split[part], limit and max(1, round(limit * len(split[part]) /
                                                        sum(len(split[p]) for p in parts))), seed)
        samples += members
        part_names += [part] * len(members)
    pixels = decode_all(root, samples, size, cache_dir if not limit else None, workers)

    def one(i: int) -> tuple[bytes, float]:
        data = encode(pixels[i], codec, quality)
        return data, psnr(pixels[i], decode_photo(data))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        encoded = list(pool.map(one, range(len(samples))))
    lengths = np.array([len(d) for d, _ in encoded], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    quality_db = np.array([p for _, p in encoded])
    info = {
        "format": PACK_FORMAT, "size": size, "codec": codec, "quality": quality, "photos": len(samples),
        "parts": {p: part_names.count(p) for p in parts}, "limited_to": limit,
        "split_file": split_file.name, "split_sha256": hashlib.sha256(split_file.read_bytes()).hexdigest(),
        "bytes_per_photo": round(float(lengths.mean()), 1),
        "psnr_db_mean": round(float(quality_db.mean()), 2), "psnr_db_p01": round(float(np.percentile(quality_db, 1)), 2),
        "decoded_as": "skinscan.training.data.decode_sample (serving's decode, centre square, bilinear)",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    packed_split = json.loads(split_file.read_text())  # the split as packed: test paths kept as they are
    for part in parts:
        packed_split[part] = [s.path for s, name in zip(samples, part_names) if name == part]
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(  # the photos are compressed already; this shrinks the text fields
        tmp,
        format=np.array(PACK_FORMAT),
        info_json=np.array(json.dumps(info)),
        split_json=np.array(json.dumps(packed_split, indent=1) + "\n"),
        blob=np.frombuffer(b"".join(d for d, _ in encoded), dtype=np.uint8),
        offsets=offsets,
        paths=np.array([s.path for s in samples]),
        labels=np.array([s.label for s in samples], dtype=np.int16),
        lesion_ids=np.array([s.lesion_id for s in samples]),
        image_types=np.array([s.photo_type for s in samples]),
        skin_tones=np.array([-1 if s.skin_tone is None else s.skin_tone for s in samples], dtype=np.int16),
        sources=np.array([sources.get(s.path, "") for s in samples]),
        parts=np.array(part_names),
    )
    tmp.replace(out)
    info["file_bytes"] = out.stat().st_size
    info["file_mib"] = round(out.stat().st_size / 2 ** 20, 2)
    info["seconds"] = round(time.time() - started, 1)
    return info


def read_pack(path: Path, workers: int = 16) -> Pack:
    """Decode every photo of a pack into memory (threads: Pillow releases the GIL while decoding)."""
    with np.load(path, allow_pickle=False) as z:
        if str(z["format"]) != PACK_FORMAT:
            raise ValueError(f"{path} is not a {PACK_FORMAT} file")
        info = json.loads(str(z["info_json"]))
        blob, offsets = z["blob"], z["offsets"]
        fields = {k: z[k] for k in ("paths", "labels", "lesion_ids", "image_types", "skin_tones", "sources",
                                    "parts")}
        split = json.loads(str(z["split_json"]))
    size = int(info["size"])
    pixels = np.empty((len(fields["paths"]), size, size, 3), dtype=np.uint8)

    def one(i: int) -> None:
        pixels[i] = decode_photo(blob[offsets[i]:offsets[i + 1]].tobytes())

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(pixels))))
    samples = [dataset.Sample(str(p), int(label), str(lesion), str(kind), None if tone < 0 else int(tone))
               for p, label, lesion, kind, tone in zip(fields["paths"], fields["labels"], fields["lesion_ids"],
                                                       fields["image_types"], fields["skin_tones"])]
    return Pack(pixels, samples, fields["parts"].astype(str), [str(s) for s in fields["sources"]], size, split,
                info)


def measure(root: Path, split_file: Path, sizes: list[int], settings: list[tuple[str, int]], n: int,
            seed: int = 42) -> list[dict]:
    """Bytes per photo and PSNR for each size x codec on ``n`` train+val photos, scaled to the full pack."""
    split = dataset.load_split(split_file, Path(root))
    everything = split["train"] + split["val"]
    rng = np.random.default_rng(seed)
    sample = [everything[i] for i in sorted(rng.choice(len(everything), min(n, len(everything)), replace=False))]
    rows = []
    for size in sizes:
        pixels = decode_all(Path(root), sample, size, None)
        for codec, quality in settings:
            lengths, quality_db = [], []
            for image in pixels:
                data = encode(image, codec, quality)
                lengths.append(len(data))
                quality_db.append(psnr(image, decode_photo(data)))
            mean = float(np.mean(lengths))
            rows.append({"size": size, "codec": codec, "quality": quality, "photos_measured": len(sample),
                         "bytes_per_photo": round(mean), "psnr_db": round(float(np.mean(quality_db)), 2),
                         "full_pack_mib": round(mean * len(everything) / 2 ** 20, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinscan.training.pack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the photo folder (with METADATA.csv)")
    parser.add_argument("--split", type=Path, required=True, help="the lesion-grouped split file to pack")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu/pack.npz"))
    parser.add_argument("--codec", choices=CODECS, default="webp")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--parts", default="train,val", help="split parts to pack (default: train,val)")
    parser.add_argument("--cache", type=Path, help="training's decoded-pixel cache (skinscan train --cache)")
    parser.add_argument("--limit", type=int, help="at most this many photos (a tiny pack for smoke tests)")
    parser.add_argument("--max-mib", type=float, default=55.0, help="fail when the pack is larger")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--measure", type=int, metavar="N",
                        help="only measure sizes 128 and 160 with a few codecs on N photos, write nothing")
    args = parser.parse_args(argv)
    if args.measure:
        settings = [("webp", 80), ("webp", 85), ("webp", 90), ("jpeg", 85), ("jpeg", 90)]
        for row in measure(args.data, args.split, [128, 160], settings, args.measure, args.seed):
            print(json.dumps(row))
        return 0
    info = build_pack(args.data, args.split, args.size, args.out, codec=args.codec, quality=args.quality,
                      parts=tuple(args.parts.split(",")), cache_dir=args.cache, limit=args.limit,
                      seed=args.seed, workers=args.workers)
    print(json.dumps(info, indent=1))
    if info["file_mib"] > args.max_mib:
        print(f"pack is {info['file_mib']} MiB, over --max-mib {args.max_mib}: lower --quality or --size",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
