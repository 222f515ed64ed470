"""The inference core: one photo in, one :class:`~skinscan.contract.Result` out.

Every adapter (HTTP function, Lambda, page, bot, CLI) calls
:meth:`Classifier.classify_bytes`; nothing else decides what a result is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import checklist, quality, triage
from .backends import Backend
from .companion import Companion
from .contract import TOP_K, Info, ModelInfo, PhotoType, Prediction, Result, TopCondition
from .imaging import Preprocessing, decode, to_model_input
from .i18n import ENGLISH, Translator
from .labels import LABELS, description, display_name
from .manifest import Manifest, manifest_path_for, read_manifest
from .metrics import softmax_with_temperature
from .novelty import NoveltyScorer
from .phototype import PhotoTypeScorer


class Classifier:
    def __init__(self, backend: Backend, manifest: Manifest, companion: Companion | None = None) -> None:
        if (companion is None) != (manifest.get("companion") is None):
            raise ValueError("the manifest's companion and the companion given differ: serve both or neither")
        self.backend = backend
        self.companion = companion
        self.manifest = manifest
        self.preprocessing = Preprocessing.from_dict(manifest["preprocessing"])
        self.temperature = float(manifest["calibration"].get("temperature", 1.0))
        self.thresholds = {**triage.DEFAULT_THRESHOLDS, **manifest["triage"]}
        self.quality_rules = {**quality.DEFAULT_QUALITY, **manifest.get("quality", {})}
        self.novelty = NoveltyScorer(manifest["ood"]) if manifest["ood"].get("projection") else None
        self.photo_type = PhotoTypeScorer(manifest["photo_type"]) if manifest.get("photo_type") else None

    @classmethod
    def load(cls, model_path: str | Path, manifest: Manifest | None = None,
             backend: str = "auto") -> "Classifier":
        """Load a verified model (and its companion): each file that runs must hash to the manifest's value."""
        from .backends import load_backend

        manifest = manifest if manifest is not None else read_manifest(manifest_path_for(model_path))
        return cls(load_backend(model_path, manifest, backend), manifest,
                   Companion.load(model_path, manifest, backend))

    @property
    def model_info(self) -> ModelInfo:
        runs = self.backend.name if self.companion is None else \
            f"{self.backend.name}+{self.manifest['companion']['role']}-{self.companion.backend.name}"
        return ModelInfo(name=self.manifest.get("name", "skinscan"), version=self.manifest["version"],
                         sha256=self.manifest["sha256"], backend=runs)

    def info(self, tr: Translator = ENGLISH) -> Info:
        return {"labels": list(LABELS), "top_k": TOP_K, "model": self.model_info.to_wire(),
                "input_size": self.preprocessing.size, "disclaimer": tr.gettext(triage.DISCLAIMER),
                "checklist": checklist.info()}

    def classify_bytes(self, data: bytes, answers: checklist.Answers | None = None,
                       tr: Translator = ENGLISH) -> Result:
        """Decode, classify, and apply the checklist answers (if any; see :mod:`skinscan.checklist`).

        Raises :class:`skinscan.imaging.ImageError` for bad bytes. Without answers the result is
        exactly the photo's. People's words (advice, names, description, disclaimer) are in
        ``tr``'s language; labels, levels and reasons stay English identifiers.
        """
        result = self.classify_image(decode(data, draft_size=max(2 * self.preprocessing.size, 512)), tr)
        return checklist.apply(result, answers, tr)

    def photo_types(self, features: np.ndarray) -> list[PhotoType | None]:
        """Camera (``clinical``) or ``dermoscopic`` per photo; None where the manifest has no rule."""
        if self.photo_type is None:
            return [None] * len(features)
        return list(self.photo_type.photo_types(features))

    def thresholds_for(self, photo_type: PhotoType | None) -> dict[str, Any]:
        return triage.thresholds_for(self.thresholds, photo_type)

    def rejected(self, figures: list[dict[str, float]], features: np.ndarray) -> np.ndarray:
        """Which photos are "not recognised": unusable by the quality rules, or novel features."""
        problems = np.array([quality.problem(f, self.quality_rules) is not None for f in figures], dtype=bool)
        novel = self.novelty.is_novel(features) if self.novelty else np.zeros(len(problems), dtype=bool)
        rejected: np.ndarray = problems | novel
        return rejected

    def classify_image(self, image: Image.Image, tr: Translator = ENGLISH) -> Result:
        problem = quality.problem(quality.measure(image), self.quality_rules)
        if problem is None:
            features, raw = self.backend.run(to_model_input(image, self.preprocessing))
            if self.novelty and self.novelty.is_novel(features)[0]:
                problem = "not_skin"
        if problem is not None:
            return Result(status="not_recognised", predictions=(), recommendation=triage.retake(problem, tr),
                          model=self.model_info, disclaimer=tr.gettext(triage.DISCLAIMER))
        if self.companion is not None:
            raw = self.companion.blend(raw, self.companion.pixels(image)[np.newaxis])
        calibrated = softmax_with_temperature(raw, self.temperature)
        return self.result_from_probabilities(calibrated[0], self.photo_types(features)[0], tr)

    def result_from_probabilities(self, probabilities: np.ndarray, photo_type: PhotoType | None = None,
                                  tr: Translator = ENGLISH) -> Result:
        by_label = {label: float(p) for label, p in zip(LABELS, probabilities, strict=True)}
        order = np.argsort(-probabilities)[:TOP_K]
        top = LABELS[order[0]]
        return Result(
            status="ok",
            predictions=tuple(Prediction(LABELS[i], round(float(probabilities[i]), 4), display_name(LABELS[i], tr))
                              for i in order),
            recommendation=triage.recommend(by_label, self.thresholds_for(photo_type), tr),
            top_condition=TopCondition(top, description(top, tr), display_name(top, tr)),
            disclaimer=tr.gettext(triage.DISCLAIMER),
            photo_type=photo_type,
            model=self.model_info,
        )
