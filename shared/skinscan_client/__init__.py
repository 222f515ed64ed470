"""The one client for the classify function, used by the page's server side (sync) and the bot (async).

It speaks the function's HTTP contract (``multipart/form-data``: field ``image``
plus the checklist answers) and owns what every caller would otherwise repeat:
the timeout, the upload size limit, mapping every failure to one
:class:`FunctionError`, the percentage format, and the disclaimer fallback.
``auth`` takes any ``httpx.Auth`` (e.g. SigV4 signing for an IAM-protected URL).

It does not import ``skinscan`` (the serving core): a client needs no numpy,
Pillow or model. Nothing about an image but its size ever reaches a log line.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from .questions import ANSWER_VALUES, FIELDS, QUESTIONS, checklist_effect

__all__ = ["ANSWER_VALUES", "DEFAULT_TIMEOUT_S", "DISCLAIMER", "FIELDS", "FunctionClient", "FunctionError",
           "MAX_UPLOAD_BYTES", "QUESTIONS", "checklist_effect", "disclaimer_of", "percent"]

log = logging.getLogger("skinscan_client")

# The function refuses larger uploads with 413 (functions.http_api.MAX_UPLOAD_BYTES; a test pins both).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0
MAX_ANSWER_BYTES = 1024 * 1024  # a classify answer is a few kB; more is not the function talking

# The fallback when an answer carries no disclaimer; the function's own text wins (a test pins equality
# with skinscan.triage.DISCLAIMER).
DISCLAIMER = (
    "skinscan is not a diagnosis and not a substitute for a doctor. It can be wrong. "
    "If a spot is new, changing, bleeding, itchy or worries you, see a doctor."
)

UNREADABLE_CODES = frozenset({"empty_image", "not_an_image", "corrupt_image", "image_too_large",
                              "unsupported_media_type"})
_SAFE_MIMETYPE = re.compile(r"^[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+$")


def percent(probability: Any) -> str:
    """``0.412`` -> ``"41%"``; halves round up (``0.125`` -> ``"13%"``, as JavaScript's Math.round);
    a tiny non-zero value reads ``"<1%"`` rather than a misleading ``"0%"``; not a number -> ``""``.

    The page's script mirrors this exactly (``Math.round(v * 100)`` = ``floor(v * 100 + 0.5)``).
    """
    try:
        value = float(probability)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(value):
        return ""
    if 0 < value < 0.005:
        return "<1%"
    return f"{math.floor(min(max(value, 0.0), 1.0) * 100 + 0.5)}%"


def disclaimer_of(result: Any) -> str:
    """The function's own disclaimer (it may change with the model); the fallback otherwise."""
    text = result.get("disclaimer") if isinstance(result, dict) else None
    return text if isinstance(text, str) and text.strip() else DISCLAIMER


class FunctionError(Exception):
    """The function gave no usable answer.

    ``code``: the function's error code (``too_large``, ``corrupt_image``, ``bad_answer``,
    ``model_unavailable``...) or, when it gave none, ``timeout``, ``unavailable`` (unreachable or a
    5xx) or ``unexpected`` (an answer that is not a classify result).
    ``status``: what a proxy passes on: the function's 4xx, 503 for its 5xx or no connection,
    504 for a timeout, 502 for nonsense. ``field``: the request field a ``bad_answer`` names.
    """

    def __init__(self, code: str, status: int, detail: str = "", field: str | None = None) -> None:
        super().__init__(f"{code} ({status}){': ' + detail if detail else ''}")
        self.code, self.status, self.detail, self.field = code, status, detail, field

    @property
    def kind(self) -> str:
        """A coarse kind for callers that need few words: timeout, too_large, unreadable,
        bad_answer, unavailable, rejected (another 4xx: a bug on our side)."""
        if self.code == "timeout":
            return "timeout"
        if self.code == "too_large" or self.status == 413:
            return "too_large"
        if self.code in UNREADABLE_CODES or self.status == 415:
            return "unreadable"
        if self.code == "bad_answer":
            return "bad_answer"
        if 400 <= self.status < 500:
            return "rejected"
        return "unavailable"


class FunctionClient:
    """``FunctionClient(url).classify(data, answers={...})`` or ``await ....aclassify(...)``."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S, auth: httpx.Auth | None = None,
                 transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url, self.timeout, self.auth = url, timeout, auth
        self._transport, self._async_transport = transport, async_transport

    # -- the two ways to call --------------------------------------------------------------------
    def classify(self, data: bytes, *, filename: str = "photo", content_type: str = "image/jpeg",
                 answers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """POST the photo (and answers) and return the function's result; raises :class:`FunctionError`."""
        request = self._request_kwargs(data, filename, content_type, answers)
        started = time.monotonic()
        try:
            with httpx.Client(timeout=self.timeout, auth=self.auth, transport=self._transport) as client:
                response = client.post(self.url, **request)
        except Exception as error:  # noqa: BLE001 - every transport failure becomes a FunctionError
            raise self._transport_error(error, len(data), started) from None
        return self._result(response, len(data), started)

    async def aclassify(self, data: bytes, *, filename: str = "photo", content_type: str = "image/jpeg",
                        answers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The same as :meth:`classify`, for asyncio callers (the bot)."""
        request = self._request_kwargs(data, filename, content_type, answers)
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout, auth=self.auth,
                                         transport=self._async_transport) as client:
                response = await client.post(self.url, **request)
        except Exception as error:  # noqa: BLE001
            raise self._transport_error(error, len(data), started) from None
        return self._result(response, len(data), started)

    # -- shared by both ----------------------------------------------------------------------------
    def _request_kwargs(self, data: bytes, filename: str, content_type: str,
                        answers: Mapping[str, str] | None) -> dict[str, Any]:
        if len(data) > MAX_UPLOAD_BYTES:
            raise FunctionError("too_large", 413, f"{len(data)} bytes")
        if not data:
            raise FunctionError("empty_image", 400)
        content_type = content_type if _SAFE_MIMETYPE.match(content_type or "") else "application/octet-stream"
        fields = {str(k): str(v) for k, v in (answers or {}).items() if v not in (None, "")}
        request: dict[str, Any] = {"files": {"image": (filename or "photo", data, content_type)},
                                   "headers": {"Accept": "application/json"}}
        if fields:
            request["data"] = fields
        return request

    def _transport_error(self, error: Exception, size: int, started: float) -> FunctionError:
        if isinstance(error, FunctionError):
            return error
        if isinstance(error, httpx.TimeoutException):
            log.warning("classify function timed out after %.1f s (%d bytes)", time.monotonic() - started, size)
            return FunctionError("timeout", 504, f"no answer within {self.timeout} s")
        log.warning("classify function unreachable: %s", type(error).__name__)
        if isinstance(error, (httpx.HTTPError, OSError)):
            return FunctionError("unavailable", 503, type(error).__name__)
        return FunctionError("unexpected", 502, type(error).__name__)  # e.g. a malformed URL

    def _result(self, response: httpx.Response, size: int, started: float) -> dict[str, Any]:
        payload: Any = None
        if len(response.content) <= MAX_ANSWER_BYTES:
            try:
                payload = response.json()
            except ValueError:
                payload = None
        if response.status_code == 200:
            if isinstance(payload, dict) and payload.get("status") in ("ok", "not_recognised"):
                log.info("classified %d bytes in %.2f s: %s", size, time.monotonic() - started,
                         payload["status"])
                return payload
            log.warning("classify function answered 200 without a result")
            raise FunctionError("unexpected", 502, "not a classify result")
        error = payload.get("error") if isinstance(payload, dict) else None
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        field = error.get("field") if isinstance(error, dict) and isinstance(error.get("field"), str) else None
        log.warning("classify function answered %d %s", response.status_code, code or "(no error code)")
        status = response.status_code
        if status >= 500:
            raise FunctionError(code or "unavailable", 503, f"HTTP {status}")
        if 400 <= status < 500:
            raise FunctionError(code or ("too_large" if status == 413 else "rejected"), status, f"HTTP {status}",
                                field=field)
        raise FunctionError("unexpected", 502, f"HTTP {status}")
