"""The checklist questions in plain words: the ONE copy of the wording the page and the bot show.

The rule itself (fields, points, levels) lives in the serving core,
``skinscan.checklist``; the function applies it. This module holds only what
people read, so the page and the bot (which do not import the core) ask the
same questions. The fields and values are the contract's (:mod:`skinscan.contract`).
Standard library only: the page's template renders these without httpx.
"""

from __future__ import annotations

from skinscan.contract import ANSWER_FIELDS, Result
from skinscan.contract import ANSWER_VALUES as ANSWER_VALUES  # the page and the bot ask with these

SOURCE = ("These are the questions of the weighted 7-point checklist that UK family doctors use for "
          "changing moles and pigmented spots (NICE guideline NG12, suspected cancer). Three of them "
          "count double. Your answers can only make the advice more cautious, never less.")
SOURCE_SHORT = "weighted 7-point checklist, NICE guideline NG12"

# (field, question) in the order asked; the major features (2 points each) come first.
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("changed_size", "Has it grown or changed in size?"),
    ("irregular_shape", "Is its shape or edge irregular?"),
    ("irregular_colour", "Does it have several colours, or is its colour uneven?"),
    ("diameter_7mm", "Is it 7 mm across or larger (about the width of a pencil, or wider)?"),
    ("inflamed", "Is it inflamed, or red around it?"),
    ("oozing", "Does it ooze, crust or bleed?"),
    ("sensation", "Does it itch, hurt or feel different?"),
)
FIELDS = ANSWER_FIELDS
assert tuple(field for field, _ in QUESTIONS) == FIELDS, "one question per checklist field, in its order"
ANSWER_LABELS = {"yes": "Yes", "no": "No", "unsure": "Not sure"}

# What the answers did, in the page's and the bot's words (the level names are the function's).
RAISED_TO = {
    "urgent": "see a doctor within 2 weeks",
    "soon": "book a doctor's appointment in the next few weeks",
}
EFFECTS = {  # {to}: RAISED_TO[level]; {score}: the checklist score. The page's script fills the same.
    "raised": "Your answers raised this to: {to}.",
    "agree": "Your answers (checklist score {score} of 10) also call for a doctor; the photo's suggestion "
             "was already at least as urgent, so it stands.",
    "stands": "Your answers (checklist score {score} of 10) did not raise the photo's suggestion; it stands.",
}


def checklist_effect(result: Result) -> str | None:
    """One sentence on what the answers did to a classify result; ``None`` when none were given."""
    summary = result.checklist
    if summary is None:
        return None
    level = result.recommendation.level
    if result.recommendation.raised_by == "checklist" and level in RAISED_TO:
        return EFFECTS["raised"].format(to=RAISED_TO[level], score=summary.score)
    if summary.level in RAISED_TO:
        return EFFECTS["agree"].format(score=summary.score)
    return EFFECTS["stands"].format(score=summary.score)
