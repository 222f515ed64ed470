"""The classify function's contract, written once: the result types, the limits and the error codes.

Why one module: the core builds a :class:`Result`, the HTTP adapter serialises it
(:meth:`Result.to_wire`), and the function client (``skinscan_client``, used by the page and the
bot) parses the answer back into the same type (:meth:`Result.from_wire`). Each of them used to
carry its own copy of the disclaimer, the upload limit, the answer fields and the error codes,
and the copies drifted. ``functions/openapi.yaml`` stays the wire truth; ``tests/test_contract.py``
holds these types and that document together.

Standard library only, and importing it loads nothing else: the client imports it without numpy,
Pillow or a model.

Two kinds of strings live here. Machine identifiers (levels, statuses, photo types, answer
fields and values, error codes) are stable English words on the wire and never translated. The
few sentences people read (:data:`DISCLAIMER`, :data:`ERROR_MESSAGES`) are module-level constants,
each written once, so they can be wrapped for translation in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, TypedDict, TypeGuard, TypeVar, get_args

from .i18n import N_

# -- limits -----------------------------------------------------------------------------------------
MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024  # larger uploads are refused with 413 ``too_large``
MAX_UPLOAD_MB: Final = MAX_UPLOAD_BYTES // (1024 * 1024)
TOP_K: Final = 4  # predictions in a recognised result, most likely first

# -- what every answer carries ----------------------------------------------------------------------
DISCLAIMER: Final = N_(
    "skinscan is not a diagnosis and not a substitute for a doctor. It can be wrong. "
    "If a spot is new, changing, bleeding, itchy or worries you, see a doctor."
)

# -- machine identifiers (stable English words on the wire, never translated) -----------------------
Status: TypeAlias = Literal["ok", "not_recognised"]
STATUSES: Final[tuple[Status, ...]] = get_args(Status)

Level: TypeAlias = Literal["urgent", "soon", "routine", "monitor", "retake"]
LEVELS: Final[tuple[Level, ...]] = get_args(Level)  # most urgent first
REFERRAL_LEVELS: Final[frozenset[Level]] = frozenset({"urgent", "soon"})
ChecklistLevel: TypeAlias = Literal["urgent", "soon"]  # what the answers alone can call for
CHECKLIST_LEVELS: Final[tuple[ChecklistLevel, ...]] = get_args(ChecklistLevel)
RaisedBy: TypeAlias = Literal["checklist"]  # what raised a recommendation above the photo's level
RAISED_BY: Final[tuple[RaisedBy, ...]] = get_args(RaisedBy)

RetakeReason: TypeAlias = Literal["too_small", "too_dark", "too_bright", "too_blurry", "no_colour", "not_skin"]
RETAKE_REASONS: Final[tuple[RetakeReason, ...]] = get_args(RetakeReason)

PhotoType: TypeAlias = Literal["clinical", "dermoscopic"]  # clinical: an ordinary camera or phone
PHOTO_TYPES: Final[tuple[PhotoType, ...]] = get_args(PhotoType)

AnswerValue: TypeAlias = Literal["yes", "no", "unsure"]
ANSWER_VALUES: Final[tuple[AnswerValue, ...]] = get_args(AnswerValue)
# The weighted 7-point checklist's fields, in the order they are asked (major features first).
ANSWER_FIELDS: Final[tuple[str, ...]] = ("changed_size", "irregular_shape", "irregular_colour",
                                         "diameter_7mm", "inflamed", "oozing", "sensation")
UPLOAD_FIELD: Final = "image"  # the multipart field that carries the photo


class ErrorCode(StrEnum):
    """The function's error codes (``{"error": {"code": ...}}``); :data:`ERROR_STATUS` gives each its status."""

    BAD_REQUEST = "bad_request"
    MISSING_IMAGE = "missing_image"
    TOO_MANY_IMAGES = "too_many_images"
    EMPTY_IMAGE = "empty_image"
    BAD_ANSWER = "bad_answer"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_TOO_LARGE = "image_too_large"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MODEL_UNAVAILABLE = "model_unavailable"
    INTERNAL_ERROR = "internal_error"


ERROR_STATUS: Final[Mapping[ErrorCode, int]] = MappingProxyType({
    ErrorCode.BAD_REQUEST: 400, ErrorCode.MISSING_IMAGE: 400, ErrorCode.TOO_MANY_IMAGES: 400,
    ErrorCode.EMPTY_IMAGE: 400, ErrorCode.BAD_ANSWER: 400, ErrorCode.NOT_AN_IMAGE: 400,
    ErrorCode.CORRUPT_IMAGE: 400, ErrorCode.IMAGE_TOO_LARGE: 400, ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415, ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.MODEL_UNAVAILABLE: 503, ErrorCode.INTERNAL_ERROR: 500,
})

# What the function says with each code, for people (in the request's language: the templates are
# gettext message ids, see skinscan.i18n); the code is what programs read. {limit} and {field} are
# filled from MESSAGE_VALUES by error_message().
ERROR_MESSAGES: Final[Mapping[ErrorCode, str]] = MappingProxyType({
    ErrorCode.BAD_REQUEST: N_("The upload stopped before it was complete. Please try again."),
    ErrorCode.MISSING_IMAGE: N_("Send the photo in a form field named '{field}'."),
    ErrorCode.TOO_MANY_IMAGES: N_("Send one photo at a time."),
    ErrorCode.EMPTY_IMAGE: N_("The upload is empty."),
    ErrorCode.NOT_AN_IMAGE: N_("The upload is not an image format we can read "
                               "(use JPEG, PNG, WebP, GIF, BMP or TIFF)."),
    ErrorCode.CORRUPT_IMAGE: N_("The image file is damaged or incomplete."),
    ErrorCode.IMAGE_TOO_LARGE: N_("The image has too many pixels to be a photo."),
    ErrorCode.TOO_LARGE: N_("The upload is over the {limit} MB limit."),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: N_("Send the photo as multipart/form-data (field '{field}') or as "
                                         "a raw image body with an image/* content type."),
    ErrorCode.METHOD_NOT_ALLOWED: N_("Use POST with an image, or GET for model info."),
    ErrorCode.MODEL_UNAVAILABLE: N_("The model is not available right now. Please try again in a minute."),
    ErrorCode.INTERNAL_ERROR: N_("Something went wrong on our side."),
})
MESSAGE_VALUES: Final[Mapping[str, object]] = MappingProxyType({"limit": MAX_UPLOAD_MB, "field": UPLOAD_FIELD})
FORM_UNREADABLE: Final = N_("The form upload could not be read.")  # bad_request, for a malformed form
NO_PIXELS: Final = N_("The image has no pixels.")  # corrupt_image, for a zero-sized image


def error_message(code: ErrorCode) -> str:
    """The code's message in English, placeholders filled (adapters translate the template instead)."""
    return ERROR_MESSAGES[code].format(**MESSAGE_VALUES)

# The function client's own codes, for failures that carry no function code (never sent by the function).
TIMEOUT: Final = "timeout"          # no answer in time
UNAVAILABLE: Final = "unavailable"  # unreachable, a 5xx, or a temporary refusal (429)
UNEXPECTED: Final = "unexpected"    # an answer that is not a classify result
REJECTED: Final = "rejected"        # another 4xx without a code: a bug on our side

_STATUS_CODES: Final[Mapping[int, str]] = MappingProxyType({
    413: ErrorCode.TOO_LARGE, 415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: UNAVAILABLE, 500: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE,
})


def code_for_status(status: int) -> str:
    """The code for an HTTP status that came without one (a proxy's, a WAF's, Lambda's throttle).

    The one mapping the client, the page's server side and its script share.
    """
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    if status >= 500:
        return UNAVAILABLE
    return REJECTED if 400 <= status < 500 else UNEXPECTED


def status_codes() -> dict[int, str]:
    """:func:`code_for_status` as a table for the statuses it names (the page's script reads it)."""
    return {status: str(code) for status, code in _STATUS_CODES.items()}


# -- the result ---------------------------------------------------------------------------------------
class ContractError(ValueError):
    """A wire payload that is not what the contract says (the client answers it as ``unexpected``)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """``label``: the class, an English identifier; ``name``: what people read, in the answer's language."""

    label: str
    probability: float
    name: str | None = None

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {"label": self.label, "probability": self.probability}
        if self.name is not None:
            wire["name"] = self.name
        return wire

    @classmethod
    def from_wire(cls, data: object) -> Prediction:
        body = _object(data, "prediction")
        return cls(label=_text(body, "label"), probability=_probability(body, "probability"),
                   name=None if body.get("name") is None else _text(body, "name"))

    @property
    def display_name(self) -> str:
        return self.name or self.label


@dataclass(frozen=True, slots=True)
class TopCondition:
    label: str
    description: str
    name: str | None = None  # the label's display name in the answer's language

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {"label": self.label}
        if self.name is not None:
            wire["name"] = self.name
        wire["description"] = self.description
        return wire

    @classmethod
    def from_wire(cls, data: object) -> TopCondition:
        body = _object(data, "top_condition")
        return cls(label=_text(body, "label"), description=_text(body, "description"),
                   name=None if body.get("name") is None else _text(body, "name"))

    @property
    def display_name(self) -> str:
        return self.name or self.label


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    backend: str  # how the networks run: litert-float32, keras-h5, fake; "+teacher-…" when a companion answers too

    def to_wire(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "backend": self.backend}

    @classmethod
    def from_wire(cls, data: object) -> ModelInfo:
        body = _object(data, "model")
        return cls(name=_text(body, "name"), version=_text(body, "version"), sha256=_text(body, "sha256"),
                   backend=_text(body, "backend"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Recommendation:
    """How soon to see a doctor, and the advice in words.

    Recognised photos carry ``malignant_probability`` and ``confident``; unusable ones the retake
    ``reason``; advice the checklist answers raised carries ``photo_level`` and ``raised_by``.
    """

    level: Level
    see_doctor: bool
    message: str
    malignant_probability: float | None = None
    confident: bool | None = None
    reason: RetakeReason | None = None
    photo_level: Level | None = None
    raised_by: RaisedBy | None = None

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {"level": self.level, "see_doctor": self.see_doctor}
        optional: dict[str, object | None] = {"malignant_probability": self.malignant_probability,
                                              "confident": self.confident, "reason": self.reason}
        wire.update({key: value for key, value in optional.items() if value is not None})
        wire["message"] = self.message
        if self.raised_by is not None:
            wire.update(photo_level=self.photo_level, raised_by=self.raised_by)
        return wire

    @classmethod
    def from_wire(cls, data: object) -> Recommendation:
        body = _object(data, "recommendation")
        malignant = body.get("malignant_probability")
        confident = body.get("confident")
        raised_by = body.get("raised_by")
        return cls(
            level=_choice(body, "level", LEVELS),
            see_doctor=_flag(body, "see_doctor"),
            message=_text(body, "message"),
            malignant_probability=None if malignant is None else _probability(body, "malignant_probability"),
            confident=None if confident is None else _flag(body, "confident"),
            reason=None if body.get("reason") is None else _choice(body, "reason", RETAKE_REASONS),
            photo_level=None if body.get("photo_level") is None else _choice(body, "photo_level", LEVELS),
            raised_by=None if raised_by is None else _choice(body, "raised_by", RAISED_BY),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecklistSummary:
    """The checklist answers as scored: present in a result when at least one answer was given."""

    score: int
    answered: int
    yes: tuple[str, ...]
    unsure: tuple[str, ...]
    level: ChecklistLevel | None  # what the answers alone call for; None: not a doctor

    def to_wire(self) -> dict[str, object]:
        return {"score": self.score, "answered": self.answered, "yes": list(self.yes),
                "unsure": list(self.unsure), "level": self.level}

    @classmethod
    def from_wire(cls, data: object) -> ChecklistSummary:
        body = _object(data, "checklist")
        return cls(score=_count(body, "score"), answered=_count(body, "answered"),
                   yes=_fields(body, "yes"), unsure=_fields(body, "unsure"),
                   level=None if body.get("level") is None else _choice(body, "level", CHECKLIST_LEVELS))


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One classify answer. ``ok``: predictions, advice, top condition; ``not_recognised``: retake advice."""

    status: Status
    predictions: tuple[Prediction, ...]
    recommendation: Recommendation
    model: ModelInfo
    disclaimer: str = DISCLAIMER
    top_condition: TopCondition | None = None
    photo_type: PhotoType | None = None
    checklist: ChecklistSummary | None = None

    @property
    def recognised(self) -> bool:
        return self.status == "ok" and self.recommendation.level != "retake"

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {"status": self.status,
                                   "predictions": [p.to_wire() for p in self.predictions],
                                   "recommendation": self.recommendation.to_wire()}
        if self.top_condition is not None:
            wire["top_condition"] = self.top_condition.to_wire()
        wire.update(disclaimer=self.disclaimer, model=self.model.to_wire())
        if self.photo_type is not None:
            wire["photo_type"] = self.photo_type
        if self.checklist is not None:
            wire["checklist"] = self.checklist.to_wire()
        return wire

    @classmethod
    def from_wire(cls, data: object) -> Result:
        """The answer as a :class:`Result`; :class:`ContractError` when it is not one.

        A missing or blank disclaimer is replaced by :data:`DISCLAIMER`: people always see one.
        """
        body = _object(data, "result")
        predictions = body.get("predictions", [])
        if not isinstance(predictions, list):
            raise ContractError("result: 'predictions' is not a list")
        disclaimer = body.get("disclaimer")
        return cls(
            status=_choice(body, "status", STATUSES),
            predictions=tuple(Prediction.from_wire(p) for p in predictions[:TOP_K]),
            recommendation=Recommendation.from_wire(body.get("recommendation")),
            model=ModelInfo.from_wire(body.get("model")),
            disclaimer=disclaimer if isinstance(disclaimer, str) and disclaimer.strip() else DISCLAIMER,
            top_condition=None if body.get("top_condition") is None else TopCondition.from_wire(body["top_condition"]),
            photo_type=None if body.get("photo_type") is None else _choice(body, "photo_type", PHOTO_TYPES),
            checklist=None if body.get("checklist") is None else ChecklistSummary.from_wire(body["checklist"]),
        )


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """``{"error": {"code", "message", "field"?}}``: ``field`` names the request field of a ``bad_answer``."""

    code: ErrorCode
    message: str
    field: str | None = None

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def to_wire(self) -> dict[str, object]:
        error: dict[str, object] = {"code": str(self.code), "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class ChecklistInfo(TypedDict):
    guideline: str
    values: list[str]
    urgent_score: int
    fields: dict[str, int]


class Info(TypedDict):
    """``GET /``: what the function can do (a wire shape, so a TypedDict)."""

    labels: list[str]
    top_k: int
    model: dict[str, object]
    input_size: int
    disclaimer: str
    checklist: ChecklistInfo


# -- parsing helpers: every check in one place, each failure a ContractError naming the field ----------
_T = TypeVar("_T", bound=str)


def _object(data: object, what: str) -> Mapping[str, object]:
    if not _is_object(data):
        raise ContractError(f"{what} is not a JSON object")
    return data


def _is_object(data: object) -> TypeGuard[Mapping[str, object]]:
    return isinstance(data, dict) and all(isinstance(key, str) for key in data)


def _text(body: Mapping[str, object], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ContractError(f"'{key}' is not a string")
    return value


def _flag(body: Mapping[str, object], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise ContractError(f"'{key}' is not true or false")
    return value


def _count(body: Mapping[str, object], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ContractError(f"'{key}' is not a count")
    return value


def _probability(body: Mapping[str, object], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise ContractError(f"'{key}' is not a probability")
    return float(value)


def _choice(body: Mapping[str, object], key: str, choices: tuple[_T, ...]) -> _T:
    value = body.get(key)
    for choice in choices:
        if value == choice:
            return choice
    raise ContractError(f"'{key}' is not one of {', '.join(choices)}")


def _fields(body: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = body.get(key)
    if not isinstance(value, list) or not all(item in ANSWER_FIELDS for item in value):
        raise ContractError(f"'{key}' is not a list of answer fields")
    return tuple(str(item) for item in value)
