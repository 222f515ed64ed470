"""The checklist answers among an HTTP request's fields: reading, checking, and typo hints.

The rule itself (what the answers mean) is the core's, :mod:`skinscan.checklist`; this module
only turns request fields into its :class:`~skinscan.checklist.Answers`, and refuses, naming the
field, what would otherwise be a silent guess:

* a known field with a value other than yes/no/unsure (case-insensitive), or given twice with
  different values;
* an unknown field that looks like an answer: any field other than ``image`` whose value is
  yes/no/unsure, or whose name, normalised (lower case, ``-``/space -> ``_``), is a known field
  or close to one (difflib ratio >= 0.75: ``changed-size``, ``irregular_color``, ``diameter7mm``).

Empty values mean "not asked" (a form may send an empty radio group as ``field=``); other fields
(``lang=en``) are ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from types import MappingProxyType
from typing import Final

from werkzeug.datastructures import MultiDict

from skinscan.checklist import Answers
from skinscan.contract import ANSWER_FIELDS, ANSWER_VALUES, UPLOAD_FIELD, AnswerValue
from skinscan.i18n import N_

CLOSE_ENOUGH: Final = 0.75
# Message templates (gettext ids: the HTTP adapter says them in the request's language).
BAD_VALUE: Final = N_("'{field}' must be yes, no or unsure.")
ANSWERED_TWICE: Final = N_("'{field}' was answered twice, differently.")
DID_YOU_MEAN: Final = N_("Unknown answer field '{field}'; did you mean '{meant}'?")
UNKNOWN_FIELD: Final = N_("Unknown answer field '{field}'. Answer fields are: {fields}.")


class AnswerError(ValueError):
    """A bad answer: ``field`` names the offending request field (the API's ``bad_answer``).

    ``template`` and ``values`` let the adapter say it in the request's language; ``message``
    is the English text.
    """

    def __init__(self, field: str, template: str, **values: str) -> None:
        self.field, self.template, self.values = field, template, {"field": field, **values}
        self.message = template.format(**self.values)
        super().__init__(self.message)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _close_field(name: str) -> str | None:
    """The known field a name was probably meant to be, if any."""
    normal = _normalise(name)
    if normal in ANSWER_FIELDS:
        return normal
    squashed = normal.replace("_", "")
    for field in ANSWER_FIELDS:
        if squashed == field.replace("_", ""):
            return field
    match = difflib.get_close_matches(normal, ANSWER_FIELDS, n=1, cutoff=CLOSE_ENOUGH)
    return match[0] if match else None


def _answer_value(value: str) -> AnswerValue | None:
    return next((v for v in ANSWER_VALUES if v == value), None)


def parse_answers(fields: MultiDict[str, str] | Iterable[tuple[str, str]] | dict[str, str] | None) -> Answers:
    """The answers among request fields (a form, query parameters, or pairs); see the module docstring.

    A :class:`~werkzeug.datastructures.MultiDict` is read with every value of a repeated field.
    """
    if fields is None:
        pairs: list[tuple[str, str]] = []
    elif isinstance(fields, MultiDict):
        pairs = list(fields.items(multi=True))
    elif isinstance(fields, dict):
        pairs = list(fields.items())
    else:
        pairs = list(fields)
    values: dict[str, AnswerValue] = {}
    for name, raw in pairs:
        if name == UPLOAD_FIELD:
            continue
        text = str(raw).strip().lower() if raw is not None else ""
        value = _answer_value(text)
        if name in ANSWER_FIELDS:
            if text == "":
                continue
            if value is None:
                raise AnswerError(name, BAD_VALUE)
            if values.get(name, value) != value:
                raise AnswerError(name, ANSWERED_TWICE)
            values[name] = value
            continue
        meant = _close_field(name)
        if meant is not None:
            raise AnswerError(name, DID_YOU_MEAN, meant=meant)
        if value is not None:
            raise AnswerError(name, UNKNOWN_FIELD, fields=", ".join(ANSWER_FIELDS))
    return Answers(MappingProxyType(values))
