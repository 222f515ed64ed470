"""The nine conditions the model knows, and what each one means for triage.

The order of ``LABELS`` is the order of the model's output units; it is also
written into every manifest so that a model trained with another order is
refused instead of silently mislabelled.

Labels are English identifiers on the wire (the API's ``label``); what people read is
:func:`display_name` and the description in their language (the labels and descriptions are
gettext message ids, see :mod:`skinscan.i18n`).
"""

from __future__ import annotations

from .contract import Level
from .i18n import ENGLISH, N_, Translator

LABELS: tuple[str, ...] = (
    N_("Actinic keratosis"),
    N_("Atopic Dermatitis"),
    N_("Benign keratosis"),
    N_("Dermatofibroma"),
    N_("Melanocytic nevus"),
    N_("Melanoma"),
    N_("Squamous cell carcinoma"),
    N_("Tinea Ringworm Candidiasis"),
    N_("Vascular lesion"),
)

MALIGNANT: frozenset[str] = frozenset({"Melanoma", "Squamous cell carcinoma"})
PRECANCEROUS: frozenset[str] = frozenset({"Actinic keratosis"})
INFLAMMATORY_OR_INFECTIOUS: frozenset[str] = frozenset(
    {"Atopic Dermatitis", "Tinea Ringworm Candidiasis"}
)
BENIGN: frozenset[str] = frozenset(
    {"Benign keratosis", "Dermatofibroma", "Melanocytic nevus", "Vascular lesion"}
)

# Triage level of each class when it is the most likely one.
LEVEL_BY_LABEL: dict[str, Level] = {
    **{label: "urgent" for label in MALIGNANT},
    **{label: "soon" for label in PRECANCEROUS},
    **{label: "routine" for label in INFLAMMATORY_OR_INFECTIOUS},
    **{label: "monitor" for label in BENIGN},
}

# One short, plain-language line per condition, shown under the top result.
DESCRIPTIONS: dict[str, str] = {
    "Actinic keratosis": N_("A rough, scaly patch caused by years of sun exposure. It can turn into "
    "skin cancer over time, so doctors usually treat it."),
    "Atopic Dermatitis": N_("Eczema: dry, itchy, inflamed skin that comes and goes. Common and not "
    "contagious; a doctor can help control flares."),
    "Benign keratosis": N_("A harmless growth such as a seborrhoeic keratosis or solar lentigo. "
    "It can look like a mole or a melanoma, so changes deserve a check."),
    "Dermatofibroma": N_("A small, firm, harmless bump, often on the legs, that dimples when pinched."),
    "Melanocytic nevus": N_("A common mole. Most are harmless; watch for changes in size, shape or colour."),
    "Melanoma": N_("A skin cancer that starts in pigment cells. It is very treatable when caught "
    "early, which is why a quick check by a doctor matters."),
    "Squamous cell carcinoma": N_("A common skin cancer, often a scaly or crusted bump on sun-exposed "
    "skin. It should be examined and treated by a doctor."),
    "Tinea Ringworm Candidiasis": N_("A fungal or yeast skin infection (ringworm, candidiasis), often a "
    "red itchy ring or patch. Usually treatable with antifungal medicine."),
    "Vascular lesion": N_("A growth made of blood vessels, such as a cherry angioma. Usually harmless."),
}

assert set(LEVEL_BY_LABEL) == set(LABELS) == set(DESCRIPTIONS)


def display_name(label: str, tr: Translator = ENGLISH) -> str:
    """What people read for a label, in ``tr``'s language (English: the label itself)."""
    return tr.gettext(label)


def description(label: str, tr: Translator = ENGLISH) -> str:
    return tr.gettext(DESCRIPTIONS[label])
