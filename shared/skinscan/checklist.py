"""The weighted 7-point checklist (UK NICE guideline NG12, suspected skin cancer): the ONE copy.

GPs ask these questions about a pigmented spot. Every adapter (the HTTP
function, the page, the bot) sends the user's answers here; nothing else
decides what they mean.

The rule:

* each field takes ``yes``, ``no`` or ``unsure`` (case-insensitive); a missing
  field was not asked; ``unsure`` scores 0 points but is reported;
* score = sum of the points of the ``yes`` answers (major features 2, minor 1);
* score >= 3 -> ``urgent`` (NICE: suspected-cancer pathway, seen within 2 weeks);
  any major feature ``yes`` -> at least ``soon``; otherwise the photo's level stands;
* the final level is the more urgent of the photo's and the answers': the
  answers never lower it;
* a photo that was not usable (``not_recognised``) with answers that reach
  ``soon``/``urgent`` gets a recommendation at that level saying the answers
  alone are reason to see a doctor, plus the retake tips; ``predictions`` stay empty.

What "looks like an answer" (and so is refused when it is not a known field):
any field other than ``image`` whose value is ``yes``/``no``/``unsure``, or any
field whose name, normalised (lower case, ``-``/space -> ``_``), is a known
field or close to one (difflib ratio >= 0.75, e.g. ``changed-size``,
``irregular_color``, ``diameter7mm``). Other fields (``lang=en``) are ignored.

The plain-word *questions* shown to people live in ``skinscan_client.questions``
(the page and the bot must not import this package); the phrases below are what
the advice message says about a ``yes``.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import triage

GUIDELINE = "weighted 7-point checklist, NICE guideline NG12 (suspected skin cancer)"
VALUES = ("yes", "no", "unsure")
URGENT_SCORE = 3
NOT_ANSWERS = frozenset({"image"})  # the upload's own field


@dataclass(frozen=True)
class Feature:
    field: str
    points: int
    phrase: str  # "...because it <phrase> and <phrase>..."

    @property
    def major(self) -> bool:
        return self.points == 2


FEATURES: tuple[Feature, ...] = (
    Feature("changed_size", 2, "has changed in size"),
    Feature("irregular_shape", 2, "has an irregular shape or edge"),
    Feature("irregular_colour", 2, "has uneven colour"),
    Feature("diameter_7mm", 1, "is 7 mm across or larger"),
    Feature("inflamed", 1, "is inflamed or red around it"),
    Feature("oozing", 1, "oozes, crusts or bleeds"),
    Feature("sensation", 1, "itches, hurts or feels different"),
)
BY_FIELD = MappingProxyType({f.field: f for f in FEATURES})
FIELDS = tuple(BY_FIELD)


class AnswerError(ValueError):
    """A bad answer: ``field`` names the offending field (for the API's ``bad_answer``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class Answers:
    """Parsed answers: field -> "yes" | "no" | "unsure", only the fields that were answered."""

    values: Mapping[str, str]

    def __bool__(self) -> bool:
        return bool(self.values)

    @property
    def yes(self) -> list[str]:
        return [f for f in FIELDS if self.values.get(f) == "yes"]

    @property
    def unsure(self) -> list[str]:
        return [f for f in FIELDS if self.values.get(f) == "unsure"]

    @property
    def score(self) -> int:
        return sum(BY_FIELD[f].points for f in self.yes)

    @property
    def level(self) -> str | None:
        """``urgent``, ``soon`` or ``None`` (the answers alone do not call for a doctor)."""
        if self.score >= URGENT_SCORE:
            return "urgent"
        if any(BY_FIELD[f].major for f in self.yes):
            return "soon"
        return None

    def summary(self) -> dict[str, Any]:
        return {"score": self.score, "answered": len(self.values), "yes": self.yes,
                "unsure": self.unsure, "level": self.level}


NO_ANSWERS = Answers(MappingProxyType({}))


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _close_field(name: str) -> str | None:
    """The known field a name was probably meant to be, if any."""
    normal = _normalise(name)
    if normal in BY_FIELD:
        return normal
    squashed = normal.replace("_", "")
    for field in FIELDS:
        if squashed == field.replace("_", ""):
            return field
    match = difflib.get_close_matches(normal, FIELDS, n=1, cutoff=0.75)
    return match[0] if match else None


def _items(mapping: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Pairs from a dict, a Werkzeug MultiDict (every value of a repeated field), or pairs."""
    if hasattr(mapping, "items"):
        try:
            return list(mapping.items(multi=True))  # type: ignore[call-arg]
        except TypeError:
            return list(mapping.items())
    return list(mapping)


def parse_answers(mapping: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> Answers:
    """Answers from request fields; raises :class:`AnswerError` naming the field.

    Refused: a known field with a value other than yes/no/unsure, a known field given twice with
    different values, and an unknown field that looks like an answer (see the module docstring).
    Empty values mean "not asked" (a form may send an empty radio group as nothing at all, or
    ``field=``). Fields that are not answers are ignored.
    """
    values: dict[str, str] = {}
    for raw_name, raw_value in _items(mapping or {}):
        name = str(raw_name)
        if name in NOT_ANSWERS:
            continue
        value = str(raw_value).strip().lower() if raw_value is not None else ""
        if name in BY_FIELD:
            if value == "":
                continue
            if value not in VALUES:
                raise AnswerError(name, f"'{name}' must be yes, no or unsure.")
            if values.get(name, value) != value:
                raise AnswerError(name, f"'{name}' was answered twice, differently.")
            values[name] = value
            continue
        meant = _close_field(name)
        if meant is not None:
            raise AnswerError(name, f"Unknown answer field '{name}'; did you mean '{meant}'?")
        if value in VALUES:
            raise AnswerError(name, f"Unknown answer field '{name}'. Answer fields are: "
                                    f"{', '.join(FIELDS)}.")
    return Answers(MappingProxyType(values))


def _more_urgent(a: str, b: str | None) -> str:
    if b is None:
        return a
    return a if triage.LEVELS.index(a) <= triage.LEVELS.index(b) else b


def _because(fields: list[str]) -> str:
    phrases = [BY_FIELD[f].phrase for f in fields]
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


ANSWER_MESSAGES = {
    "urgent": "Your answers alone are reason to see a doctor soon, ideally within 2 weeks, because "
              "it {because}. On the NICE weighted 7-point checklist that GPs use, this scores "
              "{score} points (3 or more means it should be checked promptly). Most such spots turn "
              "out fine, but only an examination can tell.",
    "soon": "Your answers alone are reason to book an appointment with a doctor in the next few "
            "weeks, because it {because}: a mole that changes in size, shape or colour should "
            "be looked at.",
}
RAISED_PREFIX = {
    "urgent": "Please see a doctor or dermatologist soon, ideally within 2 weeks. Your answers raised "
              "this from the photo's suggestion because it {because} ({score} points on the NICE "
              "weighted 7-point checklist; 3 or more means it should be checked promptly).",
    "soon": "Please book an appointment with a doctor in the next few weeks. Your answers raised this "
            "from the photo's suggestion because it {because}: a mole that changes in size, "
            "shape or colour should be looked at.",
}
NOT_RECOGNISED_TAIL = (" We could not use the photo itself ({reason}); to add the photo's view, take a "
                       "sharp close-up in good light with the spot in the centre, and try again.")


def apply(result: Mapping[str, Any], answers: Answers | None) -> dict[str, Any]:
    """The result with the answers applied; ``result`` is not modified.

    No answers: an unchanged copy. Otherwise ``checklist`` is added and the recommendation is
    raised to the answers' level when that is more urgent than the photo's (never lowered).
    """
    out = copy.deepcopy(dict(result))
    if not answers:
        return out
    summary = answers.summary()
    out["checklist"] = summary
    level = summary["level"]
    recommendation = dict(out.get("recommendation") or {})
    photo_level = recommendation.get("level", "retake")
    if photo_level not in triage.LEVELS:
        photo_level = "retake"
    if level is None or _more_urgent(photo_level, level) == photo_level:
        out["recommendation"] = recommendation  # the photo's level stands (or is as urgent)
        return out
    words = {"because": _because(answers.yes), "score": summary["score"]}
    if out.get("status") == "not_recognised":
        reason = recommendation.get("reason", "")
        message = ANSWER_MESSAGES[level].format(**words) + NOT_RECOGNISED_TAIL.format(
            reason=triage.RETAKE_REASONS.get(reason, reason or "it was not usable"))
        out["predictions"] = []
    else:
        message = RAISED_PREFIX[level].format(**words)
        if recommendation.get("message"):
            message += " What the photo alone suggested: " + str(recommendation["message"])
    recommendation.update(level=level, see_doctor=level in triage.REFERRAL_LEVELS, message=message,
                          photo_level=photo_level, raised_by="checklist")
    out["recommendation"] = recommendation
    return out


def info() -> dict[str, Any]:
    """The checklist's fields for the function's ``GET`` info (names and points; no wording)."""
    return {"guideline": GUIDELINE, "values": list(VALUES), "urgent_score": URGENT_SCORE,
            "fields": {f.field: f.points for f in FEATURES}}
