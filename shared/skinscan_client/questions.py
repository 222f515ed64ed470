"""The checklist questions in plain words: the ONE copy of the wording the page and the bot show.

The rule itself (fields, points, levels) lives in the serving core,
``skinscan.checklist``; the function applies it. This module holds only what
people read, so the page and the bot (which do not import the core) ask the
same questions. The fields and values are the contract's (:mod:`skinscan.contract`).
Standard library only: the page's template renders these without httpx.

The English texts are gettext message ids (:mod:`skinscan.i18n`): show them through a
translator's ``gettext`` (``checklist_effect`` takes one).
"""

from __future__ import annotations

from skinscan.contract import ANSWER_FIELDS, Result
from skinscan.contract import ANSWER_VALUES as ANSWER_VALUES  # the page and the bot ask with these
from skinscan.i18n import ENGLISH, N_, Translator

SOURCE = N_("These are the questions of the weighted 7-point checklist that UK family doctors use for "
             "changing moles and pigmented spots (NICE guideline NG12, suspected cancer). Three of them "
             "count double. Your answers can only make the advice more cautious, never less.")
SOURCE_SHORT = N_("weighted 7-point checklist, NICE guideline NG12")

# (field, question) in the order asked; the major features (2 points each) come first.
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("changed_size", N_("Has it grown or changed in size?")),
    ("irregular_shape", N_("Is its shape or edge irregular?")),
    ("irregular_colour", N_("Does it have several colours, or is its colour uneven?")),
    ("diameter_7mm", N_("Is it 7 mm across or larger (about the width of a pencil, or wider)?")),
    ("inflamed", N_("Is it inflamed, or red around it?")),
    ("oozing", N_("Does it ooze, crust or bleed?")),
    ("sensation", N_("Does it itch, hurt or feel different?")),
)
FIELDS = ANSWER_FIELDS
assert tuple(field for field, _ in QUESTIONS) == FIELDS, "one question per checklist field, in its order"
ANSWER_LABELS = {"yes": N_("Yes"), "no": N_("No"), "unsure": N_("Not sure")}

# What the answers did, in the page's and the bot's words (the level names are the function's).
RAISED_TO = {
    "urgent": N_("see a doctor within 2 weeks"),
    "soon": N_("book a doctor's appointment in the next few weeks"),
}
EFFECTS = {  # {to}: RAISED_TO[level]; {score}: the checklist score. The page's script fills the same.
    "raised": N_("Your answers raised this to: {to}."),
    "agree": N_("Your answers (checklist score {score} of 10) also call for a doctor; the photo's suggestion "
                "was already at least as urgent, so it stands."),
    "stands": N_("Your answers (checklist score {score} of 10) did not raise the photo's suggestion; it stands."),
}


def checklist_effect(result: Result, tr: Translator = ENGLISH) -> str | None:
    """One sentence on what the answers did to a classify result; ``None`` when none were given."""
    summary = result.checklist
    if summary is None:
        return None
    level = result.recommendation.level
    if result.recommendation.raised_by == "checklist" and level in RAISED_TO:
        return tr.gettext(EFFECTS["raised"]).format(to=tr.gettext(RAISED_TO[level]), score=summary.score)
    if summary.level in RAISED_TO:
        return tr.gettext(EFFECTS["agree"]).format(score=summary.score)
    return tr.gettext(EFFECTS["stands"]).format(score=summary.score)
