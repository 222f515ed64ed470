"""The seed paper's comparison table, reproduced on our data: CNN, MobileNet, DenseNet121.

Every network is trained from scratch by :func:`skinscan.training.train.train`
with the same split, sampling, augmentation and schedule, then measured on
training photos (a fixed sample, without augmentation) and on the held-out
test photos, per photo type: accuracy, loss, and the seconds per training
step on this machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import data as dataset
from ..imaging import Preprocessing
from ..labels import LABELS


TRAIN_SAMPLE = 1500


def measure(model_path: Path, data: Path, split: dict, image_size: int) -> dict[str, float]:
    import keras

    model = keras.models.load_model(model_path, compile=False)
    preprocessing = Preprocessing(image_size)
    rng = np.random.default_rng(0)
    train = split["train"]
    parts = {"train": [train[i] for i in sorted(rng.choice(len(train), min(TRAIN_SAMPLE, len(train)),
                                                           replace=False))],
             "test": split["test"]}
    figures = {}
    for part, samples in parts.items():
        pixels, labels = dataset.load_pixels(data, samples, image_size)
        probabilities = model.predict(preprocessing.normalize(pixels.astype(np.float32)), batch_size=64, verbose=0)
        correct = probabilities.argmax(1) == labels
        figures[f"{part}_accuracy"] = float(np.mean(correct))
        figures[f"{part}_loss"] = float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-7)))
        if part == "test":
            for kind in dataset.PHOTO_TYPES:
                members = np.array([s.photo_type == kind for s in samples])
                if members.any():
                    figures[f"test_accuracy_{kind}"] = float(np.mean(correct[members]))
    return figures


def compare(data: Path, out_dir: Path, split_file: Path, epochs: int, image_size: int,
            architectures: tuple[str, ...] = ("cnn", "mobilenet", "densenet121"),
            reuse: dict[str, Path] | None = None, steps_per_epoch: int | None = None) -> list[dict[str, Any]]:
    """Train (or reuse, for ``reuse[name] = model.h5``) each network and measure it."""
    from .train import TrainConfig, train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = dataset.load_split(split_file, data)
    rows = []
    for name in architectures:
        model_path = (reuse or {}).get(name) or out_dir / f"{name}.h5"
        if name not in (reuse or {}):
            train(TrainConfig(data=data, out=model_path, architecture=name, epochs=epochs, image_size=image_size,
                              steps_per_epoch=steps_per_epoch, split_file=split_file, verbose=2))
        summary = json.loads(Path(model_path).with_name(Path(model_path).stem + ".training.json").read_text())
        size = summary["config"]["image_size"]
        history = summary["history"]
        steps = summary["config"].get("steps_per_epoch") or 1
        rows.append({"model": name, "epochs": summary["epochs_run"], "image_size": size,
                     **measure(Path(model_path), data, split, size),
                     "seconds_per_step": round(float(np.median([h["seconds"] for h in history])) / steps, 3),
                     "history": history})
    (out_dir / "comparison.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out_dir / "comparison.txt").write_text(table(rows))
    plot_curves(rows, out_dir / "training_curves.png")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'model':12s} {'epochs':>6s} {'px':>4s} {'train acc':>9s} {'train loss':>10s} "
              f"{'test acc':>8s} {'camera':>7s} {'dermo.':>7s} {'test loss':>9s} {'s/step':>7s}")
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['model']:12s} {row['epochs']:6d} {row['image_size']:4d} {row['train_accuracy']:9.3f} "
                     f"{row['train_loss']:10.3f} {row['test_accuracy']:8.3f} "
                     f"{row.get('test_accuracy_clinical', float('nan')):7.3f} "
                     f"{row.get('test_accuracy_dermoscopic', float('nan')):7.3f} {row['test_loss']:9.3f} "
                     f"{row['seconds_per_step']:7.3f}")
    return "\n".join(lines) + (f"\n(train = {TRAIN_SAMPLE} sampled training photos; "
                               f"test = held-out lesion-grouped split, {len(LABELS)} classes)\n")


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for i, row in enumerate(rows):
        epochs = [h["epoch"] for h in row["history"]]
        left.plot(epochs, [h["score"] for h in row["history"]], color=f"C{i}", label=f"{row['model']} validation")
        right.plot(epochs, [h["loss"] for h in row["history"]], color=f"C{i}", label=f"{row['model']} train")
    left.set(title="validation score (mean of top-1 and balanced, per photo type)", xlabel="epoch")
    right.set(title="loss", xlabel="epoch")
    left.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
