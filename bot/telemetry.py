"""Logs and metrics for the webhook: Powertools for AWS Lambda, used as its authors show it.

A module-level :data:`logger` and :data:`metrics`. Each delivery ends in one JSON log line
(``"message": "webhook"``: ``update_type``, ``outcome``, ``http_status``, ``latency_ms``) and one
CloudWatch EMF line (namespace ``skinscan``: ``Updates``, ``Latency``, ``Errors``, per ``service``
and per ``service``+``outcome`` and ``service``+``update_type``), both on stdout. Under Lambda the
handler's Powertools decorators add ``cold_start`` and the invocation's context and flush the
metrics; elsewhere (functions-framework, tests) :func:`observe_delivery` flushes them.

Never logged: the chat text, the photo or document, names, chat or user ids, the secret header.
``update_type`` is a name from the fixed lists below (``message.photo``, ``callback_query``...),
read from the update's keys only, and only once the secret has been checked.

``POWERTOOLS_SERVICE_NAME`` (default ``skinscan-bot``), ``POWERTOOLS_METRICS_NAMESPACE``
(default ``skinscan``), ``POWERTOOLS_METRICS_DISABLED=true`` and ``SKINSCAN_LOG_LEVEL`` apply.
(The classify function has its own, ``functions.observability``; the bot does not import it.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "skinscan-bot"
UPDATE_KINDS: Final = ("message", "edited_message", "callback_query", "channel_post", "edited_channel_post",
                       "inline_query", "chosen_inline_result", "my_chat_member", "chat_member",
                       "chat_join_request", "business_message", "message_reaction")
MESSAGE_KINDS: Final = ("photo", "document", "text", "sticker", "video", "voice", "audio", "animation",
                        "location", "contact", "video_note")
OUTCOMES: Final = {b"ok": "ok", b"ignored": "ignored", b"duplicate": "duplicate",
                   b"unavailable": "unavailable", b"forbidden": "forbidden"}

# stdout as the process got it (Lambda ships it to CloudWatch; the file descriptor is what tests capture).
logger = Logger(service=SERVICE, level=os.environ.get("SKINSCAN_LOG_LEVEL", "INFO").upper(), use_rfc3339=True,
                stream=sys.__stdout__)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "skinscan", service=SERVICE)
_flushing = threading.Lock()  # concurrent deliveries (functions-framework threads): add and flush together


def update_type(body: bytes | str) -> str:
    """``message.photo``, ``callback_query``, ...: names from our lists, never the content."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return "invalid"
    if not isinstance(data, dict):
        return "invalid"
    kind = next((k for k in UPDATE_KINDS if k in data), None)
    if kind is None:
        return "other"
    inner = data[kind]
    if kind in ("message", "edited_message", "channel_post", "edited_channel_post", "business_message") \
            and isinstance(inner, dict):
        return f"{kind}.{next((k for k in MESSAGE_KINDS if k in inner), 'other')}"
    return kind


def observe_delivery(body: bytes | str, answer: Callable[[], tuple[int, bytes]], *,
                     in_lambda: bool = False) -> tuple[int, bytes]:
    """Run ``answer()`` (the webhook's handling of one delivery); log and count it."""
    start = time.perf_counter()
    status, payload = 500, b"error"
    try:
        status, payload = answer()
        return status, payload
    finally:
        latency_ms = round((time.perf_counter() - start) * 1000, 1)
        try:
            _record(body, status, payload, latency_ms, flush=not in_lambda)
        except Exception:  # telemetry must never cost Telegram its answer
            logging.getLogger("bot.telemetry").exception("could not record the delivery")


def _record(body: bytes | str, status: int, payload: bytes, latency_ms: float, *, flush: bool) -> None:
    outcome = OUTCOMES.get(payload, "error")
    kind = "unauthorised" if status == 403 else update_type(body)
    write = logger.error if status >= 500 else logger.info
    write("webhook", extra={"update_type": kind, "outcome": outcome, "http_status": status, "latency_ms": latency_ms})
    with _flushing:
        metrics.add_dimensions(service=SERVICE, outcome=outcome)
        metrics.add_dimensions(service=SERVICE, update_type=kind)
        metrics.add_metric(name="Updates", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency_ms)
        if status >= 500 or outcome in ("unavailable", "error"):
            metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
        if flush:
            metrics.flush_metrics()
