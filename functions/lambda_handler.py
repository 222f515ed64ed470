"""The same classify function behind AWS Lambda (function URL or HTTP API v2 / REST v1 events).

The event is turned into a Werkzeug request and answered by
:func:`functions.http_api.respond`, so Lambda and functions-framework share
every status code and JSON shape. Each invocation writes one JSON log line and one EMF
metrics line (:mod:`functions.observability`), with Lambda's request id.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import os
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request

from functions import observability
from functions.http_api import error_response, respond
from skinscan import configure_process
from skinscan.contract import ErrorCode

configure_process()
observability.configure()

if os.environ.get("SKINSCAN_PRELOAD") == "1":
    # Load during Lambda's init phase (timed: ModelLoadTime); a failure is answered as 503 per
    # request, and retried then.
    observability.preload_model()


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    request: Request | None
    try:
        request = request_from_event(event)
        answer = functools.partial(respond, request)
    except ValueError as error:
        request, answer = None, functools.partial(error_response, ErrorCode.BAD_REQUEST, str(error))
    request_id = getattr(context, "aws_request_id", None)
    response = observability.observe(request, answer,
                                     request_id=request_id if isinstance(request_id, str) else None)
    return {
        "statusCode": response.status_code,
        "headers": dict(response.headers),
        "body": response.get_data(as_text=True),
        "isBase64Encoded": False,
    }


def _query_string(event: dict[str, Any]) -> str:
    """HTTP API v2 and function URLs send ``rawQueryString``; REST (v1) events send only the parsed
    parameters, which would otherwise lose the checklist answers of a raw ``image/*`` upload."""
    if event.get("rawQueryString"):
        return str(event["rawQueryString"])
    multi = event.get("multiValueQueryStringParameters")
    single = event.get("queryStringParameters")
    if isinstance(multi, dict) and multi:
        return urlencode([(k, v) for k, values in multi.items() for v in (values or [])])
    if isinstance(single, dict) and single:
        return urlencode(list(single.items()))
    return ""


def request_from_event(event: dict[str, Any]) -> Request:
    if not isinstance(event, dict):
        raise ValueError("The event is not an HTTP request.")
    context = event.get("requestContext") or {}
    http = (context.get("http") if isinstance(context, dict) else None) or {}
    raw_headers = event.get("headers") or {}
    body = event.get("body") or ""
    if not isinstance(http, dict) or not isinstance(raw_headers, dict) or not isinstance(body, (str, bytes)):
        raise ValueError("The event is not an HTTP request.")
    method = str(http.get("method") or event.get("httpMethod") or "GET")
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ValueError("The request body is not valid base64.") from None
    else:
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    environ = {
        "REQUEST_METHOD": method.upper(),
        "PATH_INFO": event.get("rawPath") or event.get("path") or "/",
        "QUERY_STRING": _query_string(event),
        "SERVER_NAME": headers.get("host", "lambda"),
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(raw),
        "CONTENT_LENGTH": str(len(raw)),
    }
    if "content-type" in headers:
        environ["CONTENT_TYPE"] = headers["content-type"]
    for name, value in headers.items():
        if name not in ("content-type", "content-length"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return Request(environ)
