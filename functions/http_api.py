"""The HTTP contract of the classify function, independent of where it runs.

Google's functions-framework hands us a Flask request; on Lambda, apig-wsgi
turns the event into a WSGI request (:mod:`functions.lambda_handler`). Both call
:func:`respond`, so the status codes, CORS headers and JSON shapes are defined
once, here; the shapes themselves are :mod:`skinscan.contract`'s.

The request's ``Accept-Language`` (negotiated with q-values, :mod:`skinscan.i18n`) chooses the
language of every text people read, error messages included; the answer says which in
``Content-Language``. Codes, labels and levels stay English identifiers.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Mapping
from typing import IO, Any, cast

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.wsgi import LimitedStream
from werkzeug.wrappers import Request, Response

from functions import observability
from functions.answers import AnswerError, parse_answers
from functions.contract import is_document_path, openapi_document
from skinscan.checklist import Answers
from skinscan.contract import (ERROR_MESSAGES, FORM_UNREADABLE, MAX_UPLOAD_BYTES, MESSAGE_VALUES, UPLOAD_FIELD,
                               ErrorBody, ErrorCode)
from skinscan.i18n import ENGLISH, Translator, for_accept_language
from skinscan.imaging import ImageError
from skinscan.service import get_classifier
from skinscan.store import ModelUnavailable

log = logging.getLogger("skinscan.http")

RAW_IMAGE_TYPES = ("image/", "application/octet-stream")


class ApiError(Exception):
    """An answer this module refuses with: the code decides the status (:data:`skinscan.contract.ERROR_STATUS`).

    ``message`` is an English template (a gettext id) filled with ``values`` in the request's language.
    """

    def __init__(self, code: ErrorCode, message: str | None = None, field: str | None = None,
                 values: Mapping[str, object] | None = None) -> None:
        self.code, self.template, self.field = code, message or ERROR_MESSAGES[code], field
        self.values = {**MESSAGE_VALUES, **(values or {})}
        super().__init__(self.template.format(**self.values))

    def body(self, tr: Translator = ENGLISH) -> ErrorBody:
        return ErrorBody(self.code, tr.gettext(self.template).format(**self.values), self.field)


def cors_headers() -> dict[str, str]:
    """What lets a page on another origin call the function (``SKINSCAN_CORS_ORIGIN``, default ``*``).

    Set empty, nothing is sent and browsers keep other sites' scripts out: the AWS deployment does
    that, where the page is same-origin (CloudFront) and integrators call with an API key, which
    belongs on a server, never in a web page (README, "Environment"; infra/DEPLOY.md).
    """
    origin = os.environ.get("SKINSCAN_CORS_ORIGIN", "*")
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Accept-Language",
        "Access-Control-Max-Age": "3600",
        "Access-Control-Expose-Headers": "X-Request-Id, Content-Language",
    }


def json_response(status: int, payload: Mapping[str, object], language: str = ENGLISH.language) -> Response:
    """JSON with the CORS and safety headers; ``language``: what the texts in it are written in."""
    headers = {**cors_headers(), "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Content-Language": language, "Vary": "Accept-Language"}
    return Response(json.dumps(payload), status=status, headers=headers, mimetype="application/json")


def error_response(code: ErrorCode, message: str | None = None, field: str | None = None,
                   tr: Translator = ENGLISH) -> Response:
    """``{"error": ...}`` with the code's status; ``field`` names the request field of a ``bad_answer``."""
    body = ApiError(code, message, field).body(tr)
    observability.note_error(code)
    return json_response(body.status, body.to_wire(), tr.language)


def respond(request: Request) -> Response:
    """Answer one request. Never raises; never echoes the upload."""
    try:
        return _respond(request)
    finally:
        # functions-framework reads whatever body is left once we have answered (its
        # ``read_request`` hook): a refused 50 MB upload would be read into memory after all
        # (bounded only by the client's Content-Length), and a client that stopped sending
        # would turn our 4xx into its 500. We need nothing more from the body, so the rest of
        # it is replaced by an empty stream (Werkzeug's ``stream`` is a settable cached property).
        request.stream = io.BytesIO()


def _respond(request: Request) -> Response:
    tr = ENGLISH
    try:
        if request.method == "OPTIONS":
            return Response(status=204, headers=cors_headers())
        if request.method == "GET" and is_document_path(request.path):
            return json_response(200, openapi_document())  # the contract (English); needs no model
        tr = for_accept_language(request.headers.get("Accept-Language"))
        if request.method == "GET":
            classifier = get_classifier()
            observability.note_model(classifier.model_info)
            observability.note_outcome("ready")
            return json_response(200, classifier.info(tr), tr.language)
        if request.method != "POST":
            raise ApiError(ErrorCode.METHOD_NOT_ALLOWED)
        image_bytes, answers = read_upload(request)
        classifier = get_classifier()
        observability.note_model(classifier.model_info)
        result = classifier.classify_bytes(image_bytes, answers=answers, tr=tr)
        observability.note_result(result)  # the request's one log line is observability's
        return json_response(200, result.to_wire(), tr.language)
    except ApiError as error:
        body = error.body(tr)
        observability.note_error(error.code)
        return json_response(body.status, body.to_wire(), tr.language)
    except ImageError as error:
        return error_response(error.code, error.message, tr=tr)
    except ClientDisconnected:
        return error_response(ErrorCode.BAD_REQUEST, tr=tr)
    except ModelUnavailable as error:
        log.warning("model unavailable: %s", error)
        return error_response(ErrorCode.MODEL_UNAVAILABLE, tr=tr)
    except Exception:  # the last guard: a bug must still produce JSON, without the upload in it
        log.exception("unexpected error while classifying")
        return error_response(ErrorCode.INTERNAL_ERROR, tr=tr)


def _in_memory(*_args: Any, **_kwargs: Any) -> io.BytesIO:
    """Keep uploaded files in memory: Werkzeug would spool large ones to a temp file on disk."""
    return io.BytesIO()


def read_image(request: Request) -> bytes:
    """The uploaded image's bytes (see :func:`read_upload`)."""
    return read_upload(request)[0]


def parse_request_answers(fields: MultiDict[str, str]) -> Answers:
    """The checklist answers among the request's fields; a bad one is a 400 ``bad_answer``."""
    try:
        return parse_answers(fields)
    except AnswerError as error:
        raise ApiError(ErrorCode.BAD_ANSWER, error.template, field=error.field, values=error.values) from None


def read_upload(request: Request) -> tuple[bytes, Answers]:
    """The uploaded image's bytes from a multipart form (field ``image``) or a raw body, and the
    checklist answers (:mod:`skinscan.checklist`): form fields beside ``image``, or query
    parameters with a raw body. Answers are checked before the image is used.

    The size limit is checked before anything is read when the client declares
    a length, and enforced while reading when it does not.
    """
    too_large = ApiError(ErrorCode.TOO_LARGE)
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES:
        raise too_large
    mimetype = request.mimetype or ""
    if mimetype == "multipart/form-data":
        # max_form_memory_size bounds text fields, but Werkzeug also applies it to the parser's
        # buffer, which holds each 64 KB read plus a partial boundary: at 64 KB every photo over
        # ~64 KB was refused as too large. Werkzeug's own default (500 kB) leaves that room.
        parser = FormDataParser(stream_factory=_in_memory, max_content_length=MAX_UPLOAD_BYTES,
                                max_form_memory_size=500_000, max_form_parts=20)
        # Without a Content-Length (chunked uploads) the form parser would buffer every byte
        # sent; the cap makes it stop at the limit as the raw-body branch does.
        stream = cast(IO[bytes], LimitedStream(request.stream, MAX_UPLOAD_BYTES, is_max=True))  # a readable stream
        try:
            _, form, files = parser.parse(stream, mimetype, request.content_length,
                                          request.mimetype_params)
        except RequestEntityTooLarge:
            raise too_large from None
        except ValueError:  # malformed multipart, e.g. no boundary
            raise ApiError(ErrorCode.BAD_REQUEST, FORM_UNREADABLE) from None
        images = files.getlist(UPLOAD_FIELD)
        if not images:
            raise ApiError(ErrorCode.MISSING_IMAGE)
        if len(images) > 1:
            raise ApiError(ErrorCode.TOO_MANY_IMAGES)
        answers = parse_request_answers(form)
        data = images[0].read()
    elif mimetype.startswith(RAW_IMAGE_TYPES):
        answers = parse_request_answers(request.args)
        data = request.stream.read(MAX_UPLOAD_BYTES + 1)
    else:
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    if len(data) > MAX_UPLOAD_BYTES:
        raise too_large
    if not data:
        raise ApiError(ErrorCode.EMPTY_IMAGE)
    return data, answers
