"""The bot's only way to classify: the classify function's HTTP contract.

The bot never loads a model. It posts the photo the way any client would
(``multipart/form-data``, field ``image``), so local polling and the
serverless webhook exercise the same deployed function. Errors are reduced to
a few kinds the handlers can turn into words; nothing about the image but its
size ever reaches a log line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

log = logging.getLogger("bot.function")

# The function refuses larger uploads with 413 (see functions.http_api.MAX_UPLOAD_BYTES).
FUNCTION_MAX_BYTES = 10 * 1024 * 1024
UNREADABLE_CODES = frozenset({"empty_image", "not_an_image", "corrupt_image", "image_too_large"})


class FunctionError(Exception):
    """The function gave no usable answer.

    ``kind`` is one of ``timeout``, ``unavailable`` (network, 5xx, nonsense),
    ``unreadable`` (the image was refused), ``too_large``, ``rejected``
    (another 4xx: a bug on our side).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


async def classify(function_url: str, image: bytes, *, filename: str, content_type: str,
                   timeout: float) -> dict[str, Any]:
    """POST one image to the function and return its JSON result, or raise :class:`FunctionError`."""
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.post(function_url, files={"image": (filename, image, content_type)})
    except httpx.TimeoutException:
        log.warning("classify function timed out after %.1f s (%d bytes)", time.monotonic() - started,
                    len(image))
        raise FunctionError("timeout", f"no answer within {timeout} s") from None
    except httpx.HTTPError as error:
        log.warning("classify function unreachable: %s", type(error).__name__)
        raise FunctionError("unavailable", type(error).__name__) from None

    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code == 200 and isinstance(payload, dict) and "status" in payload:
        log.info("classified %d bytes in %.2f s: %s", len(image), time.monotonic() - started,
                 payload["status"])
        return payload

    code = ""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        code = str(payload["error"].get("code", ""))
    log.warning("classify function answered %d %s", response.status_code, code or "(no error code)")
    if response.status_code == 413 or code == "too_large":
        raise FunctionError("too_large", code)
    if response.status_code == 400 and code in UNREADABLE_CODES:
        raise FunctionError("unreadable", code)
    if 400 <= response.status_code < 500:
        raise FunctionError("rejected", f"{response.status_code} {code}")
    raise FunctionError("unavailable", f"{response.status_code} {code}")
