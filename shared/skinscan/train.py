"""Train the seed DenseNet121 from scratch on a folder of labelled photos.

Nothing is downloaded: the network starts from random weights (or from a
local weights file given with ``--weights``). Training is sized for a small
CPU machine: photos are decoded once into memory, augmented in batches inside
TensorFlow, and the learning rate follows a cosine curve over whichever runs
out first, the epoch count or the wall-clock budget.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import data as dataset
from .imaging import Preprocessing
from .labels import LABELS


@dataclass
class TrainConfig:
    data: Path
    out: Path
    image_size: int = 128
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 3
    dropout: float = 0.3
    label_smoothing: float = 0.05
    class_weight_power: float = 0.75
    patience: int = 20
    time_budget_minutes: float | None = None
    seed: int = 42
    architecture: str = "densenet121"
    weights: Path | None = None
    split_file: Path | None = None
    verbose: int = 1


def class_weights(labels: np.ndarray, power: float) -> dict[int, float]:
    """Inverse-frequency weights softened by ``power`` (0 = none, 1 = fully balanced)."""
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float64)
    present = counts > 0
    raw = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
    weights = raw ** power
    return {i: float(w) for i, w in enumerate(weights)}


def augment_batch(images, tf, rng_seed: int):
    """Photo-safe augmentation on a uint8 batch: crops, the 8 flips/rotations, light and colour."""
    shape = tf.shape(images)
    n, size = shape[0], shape[1]
    x = tf.cast(images, tf.float32)
    scale = tf.sqrt(tf.random.uniform([n], 0.45, 1.0))
    aspect = tf.exp(tf.random.uniform([n], math.log(3 / 4), math.log(4 / 3)))
    h = tf.minimum(scale / tf.sqrt(aspect), 1.0)
    w = tf.minimum(scale * tf.sqrt(aspect), 1.0)
    y0 = tf.random.uniform([n]) * (1.0 - h)
    x0 = tf.random.uniform([n]) * (1.0 - w)
    boxes = tf.stack([y0, x0, y0 + h, x0 + w], axis=1)
    x = tf.image.crop_and_resize(x, boxes, tf.range(n), tf.stack([size, size]))

    def per_sample(p):
        return tf.random.uniform([n, 1, 1, 1]) < p

    x = tf.where(per_sample(0.5), tf.reverse(x, axis=[2]), x)
    x = tf.where(per_sample(0.5), tf.reverse(x, axis=[1]), x)
    x = tf.where(per_sample(0.5), tf.transpose(x, [0, 2, 1, 3]), x)

    brightness = tf.random.uniform([n, 1, 1, 1], 0.75, 1.25)
    contrast = tf.random.uniform([n, 1, 1, 1], 0.75, 1.25)
    saturation = tf.random.uniform([n, 1, 1, 1], 0.7, 1.3)
    channel_gain = tf.random.uniform([n, 1, 1, 3], 0.92, 1.08)  # white-balance shifts
    x = x * brightness * channel_gain
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * contrast + mean
    grey = tf.reduce_mean(x, axis=3, keepdims=True)
    x = (x - grey) * saturation + grey
    return tf.clip_by_value(x, 0.0, 255.0)


def train(config: TrainConfig) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from .architecture import ARCHITECTURES, SEED_PARAMETER_COUNT

    keras.utils.set_random_seed(config.seed)
    started = time.time()
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    preprocessing = Preprocessing(size=config.image_size)

    samples = dataset.discover(config.data)
    if config.split_file and Path(config.split_file).exists():
        split = dataset.load_split(config.split_file)
    else:
        split = dataset.stratified_split(samples, seed=config.seed)
    split_path = Path(config.split_file) if config.split_file else out.with_name(out.stem + ".split.json")
    dataset.save_split(split, split_path, config.seed)

    print(f"loading {len(split['train'])} training and {len(split['val'])} validation photos "
          f"at {config.image_size}px", flush=True)
    x_train, y_train = dataset.load_pixels(config.data, split["train"], config.image_size)
    x_val, y_val = dataset.load_pixels(config.data, split["val"], config.image_size)
    weights = class_weights(y_train, config.class_weight_power)

    model = ARCHITECTURES[config.architecture](config.image_size, config.dropout,
                                               str(config.weights) if config.weights else None)
    if config.architecture == "densenet121" and model.count_params() != SEED_PARAMETER_COUNT:
        raise RuntimeError(f"DenseNet121 head has {model.count_params()} parameters, not {SEED_PARAMETER_COUNT}")
    model.compile(
        optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )

    def prepare(images, labels):
        pixels = augment_batch(images, tf, config.seed)
        sample_weight = tf.gather(tf.constant([weights[i] for i in range(len(LABELS))]), labels)
        return preprocessing.normalize(pixels), tf.one_hot(labels, len(LABELS)), sample_weight

    train_ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                .shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
                .batch(config.batch_size, drop_remainder=True)
                .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))
    val_inputs = preprocessing.normalize(x_val.astype(np.float32))

    control = _TrainingControl(config, val_inputs, y_val)
    history = model.fit(train_ds, epochs=config.epochs, callbacks=[control],
                        verbose=config.verbose)
    model.set_weights(control.best_weights)
    model.save(out, include_optimizer=False)

    from .manifest import manifest_path_for, new_manifest, sha256_file, write_manifest
    summary = {
        "data": str(config.data),
        "split_file": split_path.name,
        "split_counts": {name: len(split[name]) for name in dataset.SPLITS},
        "train_class_counts": dataset.class_counts(split["train"]),
        "class_weights": {LABELS[i]: round(w, 4) for i, w in weights.items()},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "epochs_run": len(history.history.get("loss", [])),
        "best_epoch": control.best_epoch + 1,
        "best_val": control.best_metrics,
        "seconds": round(time.time() - started, 1),
        "seconds_per_step": round(float(np.median(control.step_seconds)), 4) if control.step_seconds else None,
        "history": {k: [round(float(v), 5) for v in values] for k, values in control.history.items()},
    }
    version = f"densenet121-{config.image_size}px-{time.strftime('%Y%m%d-%H%M', time.gmtime())}"
    write_manifest(new_manifest(out, preprocessing.to_dict(), version,
                                training={k: summary[k] for k in ("split_counts", "epochs_run", "best_epoch",
                                                                   "best_val", "seconds")}),
                   manifest_path_for(out))
    summary_path = out.with_name(out.stem + ".training.json")
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"saved {out} (sha256 {sha256_file(out)[:12]}…), best epoch {summary['best_epoch']}: "
          f"{control.best_metrics}", flush=True)
    return summary


class _TrainingControl:
    """Cosine learning rate over time or epochs, best-on-validation weights, early stop."""

    def __new__(cls, *args, **kwargs):
        import keras

        class Control(keras.callbacks.Callback):
            def __init__(self, config: TrainConfig, val_inputs, val_labels):
                super().__init__()
                self.config = config
                self.val_inputs, self.val_labels = val_inputs, val_labels
                self.best_score, self.best_epoch = -1.0, 0
                self.best_weights = None
                self.best_metrics: dict[str, float] = {}
                self.history: dict[str, list[float]] = {}
                self.step_seconds: list[float] = []
                self.started = time.time()

            def progress(self, epoch: int) -> float:
                by_epoch = epoch / self.config.epochs
                budget = self.config.time_budget_minutes
                by_time = (time.time() - self.started) / (budget * 60) if budget else 0.0
                return min(1.0, max(by_epoch, by_time))

            def on_epoch_begin(self, epoch, logs=None):
                base = self.config.learning_rate
                if epoch < self.config.warmup_epochs:
                    rate = base * (epoch + 1) / self.config.warmup_epochs
                else:
                    rate = base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * self.progress(epoch))))
                self.model.optimizer.learning_rate.assign(rate)
                self.epoch_started = time.time()
                self.rate = rate

            def on_train_batch_begin(self, batch, logs=None):
                self.batch_started = time.time()

            def on_train_batch_end(self, batch, logs=None):
                self.step_seconds.append(time.time() - self.batch_started)

            def on_epoch_end(self, epoch, logs=None):
                from .metrics import balanced_accuracy

                probs = self.model.predict(self.val_inputs, batch_size=64, verbose=0)
                predicted = probs.argmax(1)
                val = {
                    "val_loss": float(-np.mean(np.log(probs[np.arange(len(probs)), self.val_labels] + 1e-7))),
                    "val_accuracy": float(np.mean(predicted == self.val_labels)),
                    "val_balanced_accuracy": balanced_accuracy(self.val_labels, predicted, len(LABELS)),
                }
                record = {"loss": float(logs.get("loss", 0)), "accuracy": float(logs.get("accuracy", 0)),
                          **val, "learning_rate": self.rate, "seconds": time.time() - self.epoch_started}
                for key, value in record.items():
                    self.history.setdefault(key, []).append(value)
                score = (val["val_accuracy"] + val["val_balanced_accuracy"]) / 2
                if score > self.best_score:
                    self.best_score, self.best_epoch = score, epoch
                    self.best_weights = self.model.get_weights()
                    self.best_metrics = {k: round(v, 4) for k, v in val.items()}
                print(f"epoch {epoch + 1}: lr {self.rate:.2e} loss {record['loss']:.3f} "
                      f"acc {record['accuracy']:.3f} | val loss {val['val_loss']:.3f} "
                      f"acc {val['val_accuracy']:.3f} bal {val['val_balanced_accuracy']:.3f} "
                      f"| {record['seconds']:.0f}s", flush=True)
                elapsed = time.time() - self.started
                budget = self.config.time_budget_minutes
                if epoch - self.best_epoch >= self.config.patience:
                    print("early stop: no validation improvement", flush=True)
                    self.model.stop_training = True
                elif budget and elapsed + record["seconds"] > budget * 60:
                    print("stop: time budget reached", flush=True)
                    self.model.stop_training = True

        return Control(*args, **kwargs)
