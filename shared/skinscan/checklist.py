"""The weighted 7-point checklist (UK NICE guideline NG12, suspected skin cancer): the rule, the ONE copy.

GPs ask these questions about a pigmented spot. The rule:

* each answer is ``yes``, ``no`` or ``unsure``; ``unsure`` scores 0 points but is reported;
* score = the points of the ``yes`` answers (major features 2, minor 1);
* score >= 3 -> ``urgent`` (NICE: suspected-cancer pathway, seen within 2 weeks);
  any major feature ``yes`` -> at least ``soon``; otherwise the photo's level stands;
* the answers only ever raise the photo's level, never lower it;
* a photo that was not usable with answers that reach ``soon``/``urgent`` gets advice at that
  level saying the answers alone are reason to see a doctor, plus the retake tips.

Reading answers out of an HTTP request (forms, query strings, typo hints) is the HTTP adapter's
job (:mod:`functions.answers`); the questions in plain words live in ``skinscan_client.questions``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from . import triage
from .i18n import ENGLISH, N_, N_plural, Translator
from .contract import (ANSWER_FIELDS, ANSWER_VALUES, LEVELS, REFERRAL_LEVELS, AnswerValue, ChecklistInfo,
                       ChecklistLevel, ChecklistSummary, Result)

GUIDELINE: Final = "weighted 7-point checklist, NICE guideline NG12 (suspected skin cancer)"
VALUES = ANSWER_VALUES
URGENT_SCORE: Final = 3


@dataclass(frozen=True)
class Feature:
    field: str
    points: int
    phrase: str  # what the advice says about a "yes": "...because it <phrase> and <phrase>..."

    @property
    def major(self) -> bool:
        return self.points == 2


FEATURES: Final[tuple[Feature, ...]] = (
    Feature("changed_size", 2, N_("has changed in size")),
    Feature("irregular_shape", 2, N_("has an irregular shape or edge")),
    Feature("irregular_colour", 2, N_("has uneven colour")),
    Feature("diameter_7mm", 1, N_("is 7 mm across or larger")),
    Feature("inflamed", 1, N_("is inflamed or red around it")),
    Feature("oozing", 1, N_("oozes, crusts or bleeds")),
    Feature("sensation", 1, N_("itches, hurts or feels different")),
)
BY_FIELD: Final = MappingProxyType({f.field: f for f in FEATURES})
FIELDS: Final = tuple(BY_FIELD)
assert FIELDS == ANSWER_FIELDS, "the rule's fields are the contract's, in the same order"


@dataclass(frozen=True)
class Answers:
    """The answers given: field -> yes/no/unsure, only the fields that were answered."""

    values: Mapping[str, AnswerValue]

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(FIELDS)
        if unknown:
            raise ValueError(f"not checklist fields: {sorted(unknown)}")

    def __bool__(self) -> bool:
        return bool(self.values)

    @property
    def yes(self) -> tuple[str, ...]:
        return tuple(f for f in FIELDS if self.values.get(f) == "yes")

    @property
    def score(self) -> int:
        return sum(BY_FIELD[f].points for f in self.yes)

    @property
    def level(self) -> ChecklistLevel | None:
        """``urgent``, ``soon`` or ``None`` (the answers alone do not call for a doctor)."""
        if self.score >= URGENT_SCORE:
            return "urgent"
        if any(BY_FIELD[f].major for f in self.yes):
            return "soon"
        return None

    def summary(self) -> ChecklistSummary:
        return ChecklistSummary(score=self.score, answered=len(self.values), yes=self.yes,
                                unsure=tuple(f for f in FIELDS if self.values.get(f) == "unsure"),
                                level=self.level)


NO_ANSWERS: Final = Answers(MappingProxyType({}))

# The advice when the answers raise the level. Those that count points are (singular, plural): the
# score takes its language's plural form (Russian has three; "urgent" means 3 or more points).
ANSWER_MESSAGES: Final[Mapping[ChecklistLevel, str | tuple[str, str]]] = {
    "urgent": N_plural("Your answers alone are reason to see a doctor soon, ideally within 2 weeks, because "
                       "it {because}. On the NICE weighted 7-point checklist that GPs use, this scores "
                       "{score} point (3 or more means it should be checked promptly). Most such spots turn "
                       "out fine, but only an examination can tell.",
                       "Your answers alone are reason to see a doctor soon, ideally within 2 weeks, because "
                       "it {because}. On the NICE weighted 7-point checklist that GPs use, this scores "
                       "{score} points (3 or more means it should be checked promptly). Most such spots turn "
                       "out fine, but only an examination can tell."),
    "soon": N_("Your answers alone are reason to book an appointment with a doctor in the next few "
               "weeks, because it {because}: a mole that changes in size, shape or colour should "
               "be looked at."),
}
RAISED_PREFIX: Final[Mapping[ChecklistLevel, str | tuple[str, str]]] = {
    "urgent": N_plural("Please see a doctor or dermatologist soon, ideally within 2 weeks. Your answers raised "
                       "this from the photo's suggestion because it {because} ({score} point on the NICE "
                       "weighted 7-point checklist; 3 or more means it should be checked promptly).",
                       "Please see a doctor or dermatologist soon, ideally within 2 weeks. Your answers raised "
                       "this from the photo's suggestion because it {because} ({score} points on the NICE "
                       "weighted 7-point checklist; 3 or more means it should be checked promptly)."),
    "soon": N_("Please book an appointment with a doctor in the next few weeks. Your answers raised this "
               "from the photo's suggestion because it {because}: a mole that changes in size, "
               "shape or colour should be looked at."),
}
PHOTO_ALONE: Final = N_(" What the photo alone suggested: ")
NOT_RECOGNISED_TAIL: Final = N_(" We could not use the photo itself ({reason}); to add the photo's view, take a "
                                "sharp close-up in good light with the spot in the centre, and try again.")
NOT_USABLE: Final = N_("it was not usable")


def _words(message: str | tuple[str, str], score: int, tr: Translator) -> str:
    """One message in ``tr``'s language: the score's plural form where the message counts points."""
    return tr.ngettext(message[0], message[1], score) if isinstance(message, tuple) else tr.gettext(message)


def _because(fields: tuple[str, ...], tr: Translator = ENGLISH) -> str:
    """``has changed in size and has uneven colour``, joined as the language joins a list."""
    return tr.join(tr.gettext(BY_FIELD[f].phrase) for f in fields)


def apply(result: Result, answers: Answers | None, tr: Translator = ENGLISH) -> Result:
    """The result with the answers applied (a new one: results are immutable).

    No answers: the result itself. Otherwise the checklist summary is added, and the
    recommendation is raised to the answers' level when that is more urgent than the photo's.
    """
    if not answers:
        return result
    summary = answers.summary()
    photo = result.recommendation
    level = summary.level
    if level is None or LEVELS.index(photo.level) <= LEVELS.index(level):
        return dataclasses.replace(result, checklist=summary)  # the photo's level stands
    words = {"because": _because(answers.yes, tr), "score": summary.score}
    if result.status == "not_recognised":
        reason = tr.gettext(triage.RETAKE_REASONS[photo.reason] if photo.reason else NOT_USABLE)
        message = (_words(ANSWER_MESSAGES[level], summary.score, tr).format(**words)
                   + tr.gettext(NOT_RECOGNISED_TAIL).format(reason=reason))
    else:
        message = (_words(RAISED_PREFIX[level], summary.score, tr).format(**words)
                   + tr.gettext(PHOTO_ALONE) + photo.message)
    raised = dataclasses.replace(photo, level=level, see_doctor=level in REFERRAL_LEVELS, message=message,
                                 photo_level=photo.level, raised_by="checklist")
    return dataclasses.replace(result, recommendation=raised, checklist=summary)


def info() -> ChecklistInfo:
    """The checklist's fields for the function's ``GET`` info (names and points; no wording)."""
    return {"guideline": GUIDELINE, "values": list(VALUES), "urgent_score": URGENT_SCORE,
            "fields": {f.field: f.points for f in FEATURES}}
