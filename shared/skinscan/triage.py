"""From probabilities to advice: which doctor, and how soon.

The rule escalates on the *combined* probability of the malignant classes,
not only on the top label, because a 35% melanoma under a 40% mole still
deserves a prompt look. Thresholds come from the manifest, where calibration
on validation data put them. The advice is written in the caller's language (a
:class:`~skinscan.i18n.Translator`; English by default); the level stays an English identifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .contract import DISCLAIMER, LEVELS, REFERRAL_LEVELS, Level, Recommendation, RetakeReason
from .i18n import ENGLISH, N_, Translator
from .labels import LABELS, LEVEL_BY_LABEL, MALIGNANT, PRECANCEROUS, display_name

__all__ = ["DISCLAIMER", "LEVELS", "REFERRAL_LEVELS", "recommend", "retake", "thresholds_for"]

MESSAGES: Final[Mapping[Level, str]] = {
    "urgent": N_("Please see a doctor or dermatologist soon, ideally within 2 weeks. This photo shares "
                 "features with a skin cancer ({label}); most such spots turn out fine, but only an "
                 "examination can tell."),
    "soon": N_("Book an appointment with a doctor in the next few weeks. This photo looks most like "
               "{label}, which is usually treated to stop it from progressing."),
    "routine": N_("This photo looks most like {label}. It is not urgent: see a doctor or pharmacist if it "
                  "spreads, hurts, or does not improve within 2 weeks."),
    "monitor": N_("This photo looks most like {label}, which is usually harmless. Keep an eye on it and "
                  "see a doctor if it grows, changes shape or colour, bleeds, or itches."),
    "retake": N_("We could not recognise a skin lesion in this photo ({reason}). Take a sharp close-up in "
                 "good light with the spot in the centre, and try again. If you are worried, see a doctor."),
}

RETAKE_REASONS: Final[Mapping[RetakeReason, str]] = {
    "too_small": N_("the image is too small"),
    "too_dark": N_("the photo is too dark"),
    "too_bright": N_("the photo is overexposed"),
    "too_blurry": N_("the photo is out of focus"),
    "no_colour": N_("the photo is black and white"),
    "not_skin": N_("it does not look like a close-up of skin"),
}

DEFAULT_THRESHOLDS = {"urgent_malignant_probability": 0.25, "soon_risk_probability": 1.01,
                      "confident_probability": 0.5}

UNSURE = N_(" The model is not sure about this photo, so if you are in any doubt, show the spot to a doctor.")


BY_PHOTO_TYPE = "urgent_malignant_probability_by_photo_type"


def thresholds_for(thresholds: dict[str, Any], photo_type: str | None) -> dict[str, Any]:
    """The rules for one photo: its photo type's urgent threshold where calibration set one.

    Without a photo type (or a threshold for it) the shared threshold applies, which
    calibration sets to meet the referral target on every photo type at once.
    """
    by_type = thresholds.get(BY_PHOTO_TYPE) or {}
    if photo_type in by_type:
        return {**thresholds, "urgent_malignant_probability": float(by_type[photo_type])}
    return thresholds


def recommend(probabilities: Mapping[str, float], thresholds: Mapping[str, Any],
              tr: Translator = ENGLISH) -> Recommendation:
    """Triage for a recognised photo. ``probabilities`` maps every label to its probability."""
    top_label = max(probabilities, key=probabilities.__getitem__)
    malignant = sum(probabilities[label] for label in MALIGNANT)
    at_risk = malignant + sum(probabilities[label] for label in PRECANCEROUS)
    level = LEVEL_BY_LABEL[top_label]
    reason_label = top_label
    if malignant >= thresholds["urgent_malignant_probability"]:
        level = "urgent"
        reason_label = max(MALIGNANT, key=probabilities.__getitem__)
    elif level in ("routine", "monitor") and at_risk >= thresholds["soon_risk_probability"]:
        level = "soon"
        reason_label = max(MALIGNANT | PRECANCEROUS, key=probabilities.__getitem__)
    if level == "urgent" and reason_label not in MALIGNANT:
        reason_label = max(MALIGNANT, key=probabilities.__getitem__)
    unsure = probabilities[top_label] < thresholds.get("confident_probability", 0.5)
    message = tr.gettext(MESSAGES[level]).format(label=display_name(reason_label, tr))
    return Recommendation(
        level=level,
        see_doctor=level in REFERRAL_LEVELS,
        malignant_probability=round(malignant, 4),
        confident=not unsure,
        message=message + tr.gettext(UNSURE) if unsure and level not in REFERRAL_LEVELS else message,
    )


def retake(reason: RetakeReason, tr: Translator = ENGLISH) -> Recommendation:
    return Recommendation(level="retake", see_doctor=False, reason=reason,
                          message=tr.gettext(MESSAGES["retake"]).format(reason=tr.gettext(RETAKE_REASONS[reason])))


assert set(LEVEL_BY_LABEL.values()) <= set(LEVELS) and len(LABELS) == 9
assert set(MESSAGES) == set(LEVELS)
