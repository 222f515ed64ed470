"""Logs and metrics for the webhook: Powertools for AWS Lambda (Logger + Metrics in EMF).

Each delivery ends in one JSON log line (``"message": "webhook"``: ``update_type``,
``outcome``, ``http_status``, ``latency_ms``, ``cold_start``) and one CloudWatch
embedded-metric-format line (namespace ``skinscan``: ``Updates``, ``Latency``, ``Errors``, per
``service`` and per ``service``+``outcome`` and ``service``+``update_type``), both on stdout.

Never logged: the chat text, the photo or document, names, chat or user ids, the secret header.
``update_type`` is a name from the fixed lists below (``message.photo``, ``callback_query``...),
read from the update's keys only, and only once the secret has been checked.

``POWERTOOLS_SERVICE_NAME`` (default ``skinscan-bot``), ``POWERTOOLS_METRICS_NAMESPACE``
(default ``skinscan``), ``POWERTOOLS_METRICS_DISABLED=true`` and ``SKINSCAN_LOG_LEVEL`` apply.
(The classify function has its own twin, ``functions.observability``; the bot does not import it.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

UPDATE_KINDS = ("message", "edited_message", "callback_query", "channel_post", "edited_channel_post",
                "inline_query", "chosen_inline_result", "my_chat_member", "chat_member",
                "chat_join_request", "business_message", "message_reaction")
MESSAGE_KINDS = ("photo", "document", "text", "sticker", "video", "voice", "audio", "animation",
                 "location", "contact", "video_note")
OUTCOMES = {b"ok": "ok", b"ignored": "ignored", b"duplicate": "duplicate",
            b"unavailable": "unavailable", b"forbidden": "forbidden"}


class _StdoutHandler(logging.StreamHandler):
    """Writes to the ``sys.stdout`` of each line's time (not of import time)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _service() -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or "skinscan-bot"


_lock = threading.Lock()
_logger: Logger | None = None
_cold = True


def _log() -> Logger:
    global _logger
    with _lock:
        if _logger is None:
            _logger = Logger(service=_service(), level=os.environ.get("SKINSCAN_LOG_LEVEL", "INFO").upper(),
                             use_rfc3339=True, logger_handler=_StdoutHandler())
            _logger.remove_keys(["location"])
            logging.getLogger(_service()).propagate = False  # one line, not a second plain one
        return _logger


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


def observe_delivery(body: bytes | str, answer: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
    """Run ``answer()`` (the webhook's handling of one delivery); log and count it."""
    global _cold
    with _lock:
        cold, _cold = _cold, False
    start = time.perf_counter()
    status, payload = 500, b"error"
    try:
        status, payload = answer()
        return status, payload
    finally:
        latency_ms = round((time.perf_counter() - start) * 1000, 1)
        try:
            _record(body, status, payload, latency_ms, cold)
        except Exception:  # telemetry must never cost Telegram its answer
            logging.getLogger("bot.telemetry").exception("could not record the delivery")


def _record(body: bytes | str, status: int, payload: bytes, latency_ms: float, cold: bool) -> None:
    outcome = OUTCOMES.get(payload, "error")
    kind = "unauthorised" if status == 403 else update_type(body)
    fields: dict[str, Any] = {"update_type": kind, "outcome": outcome, "http_status": status,
                              "latency_ms": latency_ms, "cold_start": cold}
    _log().log(logging.ERROR if status >= 500 else logging.INFO, "webhook", extra=fields)
    metrics = EphemeralMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "skinscan",
                               service=_service())
    metrics.add_dimensions(service=_service(), outcome=outcome)
    metrics.add_dimensions(service=_service(), update_type=kind)
    metrics.add_metric(name="Updates", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency_ms)
    if status >= 500 or outcome in ("unavailable", "error"):
        metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics.flush_metrics(raise_on_empty_metrics=False)
