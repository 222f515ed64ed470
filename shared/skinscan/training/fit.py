"""The Keras pieces of training: batches, the two-view loss, the epoch controller.

Written against Keras 3's public API only (``keras.ops``, ``PyDataset``,
``Model.compute_loss``), so the same code trains on the TensorFlow backend
(CPU) and on the PyTorch backend (the GPU machine).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from ..imaging import Preprocessing
from .augment import AugmentConfig, augment
from .sampling import BatchSampler
from .train import learning_rate


class TrainingBatches(keras.utils.PyDataset):
    """Balanced, augmented batches drawn afresh every epoch from photos held in memory."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, sampler: BatchSampler, steps: int,
                 preprocessing: Preprocessing, augmentation: AugmentConfig, n_classes: int, seed: int,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pixels, self.labels, self.sampler = pixels, labels, sampler
        self.steps, self.preprocessing, self.augmentation = steps, preprocessing, augmentation
        self.n_classes, self.seed, self.epoch = n_classes, seed, 0

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        ids = self.sampler.batch(rng)
        images = np.stack([augment(self.pixels[i], rng, self.augmentation) for i in ids]).astype(np.float32)
        targets = np.eye(self.n_classes, dtype=np.float32)[self.labels[ids]]
        return self.preprocessing.normalize(images).astype(np.float32), targets

    def on_epoch_end(self) -> None:
        self.epoch += 1


class TwoViewTrainer(keras.Model):
    """Trains ``network`` with cross-entropy plus agreement between two views of a lesion.

    The batch layout comes from :class:`BatchSampler`: rows ``[0, pairs)`` are
    camera photos and rows ``[pairs, 2 * pairs)`` the dermoscopic photos of the
    same lesions. The extra term is the Jensen-Shannon divergence between the
    two predicted distributions, which rewards features that do not depend on
    how the lesion was photographed.
    """

    def __init__(self, network: keras.Model, pairs: int, consistency: float, label_smoothing: float) -> None:
        super().__init__()
        self.network = network
        self.pairs, self.consistency = pairs, consistency
        self.cross_entropy = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = self.cross_entropy(y, y_pred)
        if self.pairs and self.consistency:
            camera, dermoscope = y_pred[: self.pairs], y_pred[self.pairs: 2 * self.pairs]
            middle = (camera + dermoscope) / 2

            def kl(p, q):
                return ops.sum(p * (ops.log(p + 1e-7) - ops.log(q + 1e-7)), axis=-1)

            loss = loss + self.consistency * ops.mean(0.5 * kl(camera, middle) + 0.5 * kl(dermoscope, middle))
        return loss


class EpochControl(keras.callbacks.Callback):
    """Learning rate, validation by photo type, checkpoints to resume from, best weights."""

    def __init__(self, network: keras.Model, total_epochs: int, base_rate: float, warmup: int,
                 validate: Callable[[keras.Model], dict[str, float]], checkpoints: Path,
                 state: dict[str, Any], time_budget_s: float | None, batches: TrainingBatches,
                 fit_to_budget: bool = True) -> None:
        super().__init__()
        self.network, self.total_epochs, self.base_rate, self.warmup = network, total_epochs, base_rate, warmup
        self.validate, self.checkpoints, self.state = validate, Path(checkpoints), state
        self.time_budget_s, self.batches = time_budget_s, batches
        self.started = time.time()
        self.fit_to_budget = fit_to_budget
        self.max_epochs = total_epochs
        self.epochs_this_run = 0
        self.state.setdefault("history", [])
        self.state.setdefault("best_score", -1.0)

    def on_epoch_begin(self, epoch, logs=None):
        self.rate = learning_rate(epoch, self.total_epochs, self.base_rate, self.warmup)
        self.model.optimizer.learning_rate.assign(self.rate)
        self.batches.epoch = epoch
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.time() - self.epoch_started
        figures = self.validate(self.network)
        record = {"epoch": epoch + 1, "loss": round(float((logs or {}).get("loss", float("nan"))), 5),
                  "learning_rate": self.rate, "seconds": round(seconds, 1), **figures}
        self.state["history"].append(record)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        if figures["score"] > self.state["best_score"]:
            self.state.update(best_score=figures["score"], best_epoch=epoch + 1, best_val=figures)
            self.network.save_weights(self.checkpoints / "best.weights.h5")
        self.network.save_weights(self.checkpoints / "last.weights.h5")
        self.state.update(epoch=epoch + 1, total_epochs=self.total_epochs,
                          seconds=round(self.state.get("seconds", 0.0) + seconds, 1))
        (self.checkpoints / "state.json").write_text(json.dumps(self.state, indent=1) + "\n")
        shown = " ".join(f"{k} {v:.3f}" for k, v in figures.items())
        print(f"epoch {epoch + 1}/{self.total_epochs}: lr {self.rate:.2e} loss {record['loss']:.3f} | {shown} "
              f"| {seconds:.0f}s", flush=True)
        elapsed = time.time() - self.started
        self.epochs_this_run += 1
        per_epoch = elapsed / self.epochs_this_run
        seconds_with_validation = time.time() - self.epoch_started
        if self.time_budget_s and self.fit_to_budget:
            # Fit the cosine into the budget, re-fitted every epoch from the latest epoch's duration
            # (the first one includes compiling; other work may share the cores). Never longer than
            # the schedule asked for.
            fits = min(self.max_epochs,
                       max(epoch + 2, epoch + 1 + int((self.time_budget_s - elapsed) / seconds_with_validation)))
            if fits != self.total_epochs:
                self.total_epochs = self.state["total_epochs"] = fits
                print(f"time budget: the schedule now ends after epoch {self.total_epochs}", flush=True)
        if epoch + 1 >= self.total_epochs:
            self.model.stop_training = True
        elif self.time_budget_s and elapsed + per_epoch > self.time_budget_s:
            print("stop: time budget reached (resume with --resume to continue)", flush=True)
            self.model.stop_training = True
