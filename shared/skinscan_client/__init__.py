"""The one client for the classify function, used by the page's server side (sync) and the bot (async).

It speaks the function's HTTP contract (``multipart/form-data``: field ``image``
plus the checklist answers) and owns what every caller would otherwise repeat:
the timeout, the upload size limit, mapping every failure to one
:class:`FunctionError`, and the percentage format. An answer is parsed into the
contract's :class:`~skinscan.contract.Result` (which also supplies the disclaimer
when an answer lacks one), so callers read typed fields, never a dict.
``auth`` takes any ``httpx.Auth`` (e.g. SigV4 signing for an IAM-protected URL).

Of ``skinscan`` it imports only :mod:`skinscan.contract` (standard library): a client
needs no numpy, Pillow or model. Nothing about an image but its size ever reaches a log line.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final

import httpx

from skinscan.contract import (DISCLAIMER, MAX_UPLOAD_BYTES, REJECTED, TIMEOUT, UNAVAILABLE, UNEXPECTED,
                               UPLOAD_FIELD, ContractError, ErrorCode, Result, code_for_status)
from skinscan.i18n import ENGLISH, Translator

from .questions import ANSWER_VALUES, FIELDS, QUESTIONS, checklist_effect

__all__ = ["ANSWER_VALUES", "DEFAULT_TIMEOUT_S", "DISCLAIMER", "FIELDS", "FunctionClient", "FunctionError",
           "MAX_UPLOAD_BYTES", "QUESTIONS", "Result", "checklist_effect", "percent"]

log = logging.getLogger("skinscan_client")

DEFAULT_TIMEOUT_S: Final = 30.0
MAX_ANSWER_BYTES: Final = 1024 * 1024  # a classify answer is a few kB; more is not the function talking

UNREADABLE_CODES: Final = frozenset({ErrorCode.EMPTY_IMAGE, ErrorCode.NOT_AN_IMAGE, ErrorCode.CORRUPT_IMAGE,
                                     ErrorCode.IMAGE_TOO_LARGE, ErrorCode.UNSUPPORTED_MEDIA_TYPE})
_SAFE_MIMETYPE = re.compile(r"^[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+$")


def percent(probability: object, tr: Translator = ENGLISH) -> str:
    """``0.412`` -> ``"41%"`` (``"41\xa0%"`` in German...); halves round up (``0.125`` -> ``"13%"``, as
    JavaScript's Math.round); a tiny non-zero value reads ``"<1%"`` rather than a misleading ``"0%"``;
    not a number -> ``""``. :meth:`skinscan.i18n.Translator.percent`; the page's script fills the
    same per-language pattern.
    """
    return tr.percent(probability)


class FunctionError(Exception):
    """The function gave no usable answer.

    ``code``: the function's error code (``too_large``, ``corrupt_image``, ``bad_answer``,
    ``model_unavailable``...) or, when it gave none, the client's own (``timeout``,
    ``unavailable``, ``unexpected``, ``rejected``: :func:`skinscan.contract.code_for_status`).
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
        if self.code in (TIMEOUT, ErrorCode.TOO_LARGE, ErrorCode.BAD_ANSWER, UNAVAILABLE):
            return str(self.code)
        if self.code in UNREADABLE_CODES:
            return "unreadable"
        return REJECTED if 400 <= self.status < 500 else UNAVAILABLE


class FunctionClient:
    """``FunctionClient(url).classify(data, answers={...})`` or ``await ....aclassify(...)``."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S, auth: httpx.Auth | None = None,
                 transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url, self.timeout, self.auth = url, timeout, auth
        self._transport, self._async_transport = transport, async_transport

    # -- the two ways to call --------------------------------------------------------------------
    def classify(self, data: bytes, *, filename: str = "photo", content_type: str = "image/jpeg",
                 answers: Mapping[str, str] | None = None, language: str | None = None) -> Result:
        """POST the photo (and answers) and return the function's result; raises :class:`FunctionError`.

        ``language`` (``"es"``...) is sent as ``Accept-Language``: the answer's texts come in it.
        """
        request = self._request_kwargs(data, filename, content_type, answers, language)
        started = time.monotonic()
        try:
            with httpx.Client(timeout=self.timeout, auth=self.auth, transport=self._transport) as client:
                with client.stream("POST", self.url, **request) as response:
                    body = _capped(response, response.iter_bytes())
        except Exception as error:  # noqa: BLE001 - every transport failure becomes a FunctionError
            raise self._transport_error(error, len(data), started) from None
        return self._result(response.status_code, body, len(data), started)

    async def aclassify(self, data: bytes, *, filename: str = "photo", content_type: str = "image/jpeg",
                        answers: Mapping[str, str] | None = None, language: str | None = None) -> Result:
        """The same as :meth:`classify`, for asyncio callers (the bot)."""
        request = self._request_kwargs(data, filename, content_type, answers, language)
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout, auth=self.auth,
                                         transport=self._async_transport) as client:
                async with client.stream("POST", self.url, **request) as response:
                    body = await _acapped(response)
        except Exception as error:  # noqa: BLE001
            raise self._transport_error(error, len(data), started) from None
        return self._result(response.status_code, body, len(data), started)

    # -- shared by both ----------------------------------------------------------------------------
    def _request_kwargs(self, data: bytes, filename: str, content_type: str,
                        answers: Mapping[str, str] | None, language: str | None = None) -> dict[str, Any]:
        if len(data) > MAX_UPLOAD_BYTES:
            raise FunctionError(ErrorCode.TOO_LARGE, 413, f"{len(data)} bytes")
        if not data:
            raise FunctionError(ErrorCode.EMPTY_IMAGE, 400)
        content_type = content_type if _SAFE_MIMETYPE.match(content_type or "") else "application/octet-stream"
        fields = {str(k): str(v) for k, v in (answers or {}).items() if v not in (None, "")}
        request: dict[str, Any] = {"files": {UPLOAD_FIELD: (filename or "photo", data, content_type)},
                                   "headers": {"Accept": "application/json"}}
        if language:
            request["headers"]["Accept-Language"] = language
        if fields:
            request["data"] = fields
        return request

    def _transport_error(self, error: Exception, size: int, started: float) -> FunctionError:
        if isinstance(error, FunctionError):
            return error
        if isinstance(error, httpx.TimeoutException):
            log.warning("classify function timed out after %.1f s (%d bytes)", time.monotonic() - started, size)
            return FunctionError(TIMEOUT, 504, f"no answer within {self.timeout} s")
        log.warning("classify function unreachable: %s", type(error).__name__)
        if isinstance(error, (httpx.HTTPError, OSError)):
            return FunctionError(UNAVAILABLE, 503, type(error).__name__)
        return FunctionError(UNEXPECTED, 502, type(error).__name__)  # e.g. a malformed URL

    def _result(self, status: int, body: bytes | None, size: int, started: float) -> Result:
        payload: object = None
        if body is not None:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
        if status == 200:
            try:
                result = Result.from_wire(payload)
            except ContractError as error:
                log.warning("classify function answered 200 without a result: %s", error)
                raise FunctionError(UNEXPECTED, 502, "not a classify result") from None
            log.info("classified %d bytes in %.2f s: %s", size, time.monotonic() - started, result.status)
            return result
        code, field = _error_of(payload)
        log.warning("classify function answered %d %s", status, code or "(no error code)")
        if status >= 500:
            raise FunctionError(code or UNAVAILABLE, 503, f"HTTP {status}")
        if 400 <= status < 500:
            raise FunctionError(code or code_for_status(status), status, f"HTTP {status}", field=field)
        raise FunctionError(UNEXPECTED, 502, f"HTTP {status}")


def _capped(response: httpx.Response, chunks: Iterator[bytes]) -> bytes | None:
    """The answer's body, or ``None`` once it passes :data:`MAX_ANSWER_BYTES` (reading stops there:
    whatever answers that much is not the function, and must not fill our memory)."""
    if _declared_too_long(response):
        return None
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            return None
    return bytes(body)


async def _acapped(response: httpx.Response) -> bytes | None:
    """:func:`_capped` for the asyncio client."""
    if _declared_too_long(response):
        return None
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            return None
    return bytes(body)


def _declared_too_long(response: httpx.Response) -> bool:
    declared = response.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > MAX_ANSWER_BYTES


def _error_of(payload: object) -> tuple[str, str | None]:
    """``(code, field)`` of an error answer; ``""`` and ``None`` where it has none."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return "", None
    field = error.get("field")
    return str(error.get("code") or ""), field if isinstance(field, str) else None
