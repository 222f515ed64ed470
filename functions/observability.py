"""Logs and metrics an operator can use: Powertools for AWS Lambda, used as its authors show it.

A module-level :data:`logger` (JSON lines) and :data:`metrics` (CloudWatch EMF). Facts are
appended to the request's log context where they become known (:func:`note_model`,
:func:`note_result`, :func:`note_error`, called by :mod:`functions.http_api`), and
:func:`observe` writes the request's one line when the answer is ready:

* **one JSON log line** (``"message": "request"``) with ``request_id``, ``route``, ``outcome``
  (the result's ``status`` or the error's ``code``), ``http_status``, ``latency_ms``,
  ``cold_start``, ``model_version``, ``model_backend``, the ``triage_level`` and, when answers were
  given, ``checklist_score``/``checklist_level``; and
* **one EMF metrics line** in namespace ``skinscan``: ``Requests``, ``Latency`` (ms), ``Errors``,
  ``ServerErrors``, ``NotRecognised``, per ``service``, per ``service``+``outcome`` and per
  ``service``+``triage_level``. Under Lambda the handler's ``log_metrics`` decorator flushes it
  (and publishes Powertools' own ``ColdStart`` metric); under functions-framework :func:`observe`
  does. Loading the model at start (``SKINSCAN_PRELOAD=1``) adds ``ModelLoadTime`` (ms).

What is never logged: the image, its size in pixels, EXIF or any metadata, file names, the URL
path or query, headers, or any text the user sent; the checklist answers appear only as their
score and level, and a ``bad_answer`` only as its code (its ``field`` is the user's text).

``POWERTOOLS_SERVICE_NAME`` (default ``skinscan-classify``), ``POWERTOOLS_METRICS_NAMESPACE``
(default ``skinscan``), ``POWERTOOLS_METRICS_DISABLED=true`` and ``SKINSCAN_LOG_LEVEL`` apply.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from werkzeug.wrappers import Request, Response

from functions.contract import is_document_path
from skinscan.contract import ErrorCode, ModelInfo, Result

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "skinscan-classify"
REQUEST_ID_HEADER = "X-Request-Id"

# stdout as the process got it: Lambda ships it to CloudWatch; a test runner's swapped sys.stdout
# does not capture a handler made at import time, the file descriptor does.
logger = Logger(service=SERVICE, level=os.environ.get("SKINSCAN_LOG_LEVEL", "INFO").upper(), use_rfc3339=True,
                stream=sys.__stdout__)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "skinscan", service=SERVICE)

_requests = itertools.count()  # outside Lambda, the process's first request is its cold start
_flushing = threading.Lock()  # a threaded server: one request's metrics are added and flushed together


def note_model(model: ModelInfo) -> None:
    """The model this process serves: on every later line, until another is loaded."""
    logger.append_keys(model_version=model.version, model_backend=model.backend)


def note_result(result: Result) -> None:
    checklist = result.checklist
    logger.thread_safe_append_keys(
        outcome=result.status, status=result.status, triage_level=result.recommendation.level,
        see_doctor=result.recommendation.see_doctor, raised_by=result.recommendation.raised_by,
        checklist_score=checklist.score if checklist else None,
        checklist_level=(checklist.level or "none") if checklist else None)


def note_error(code: ErrorCode) -> None:
    """The error's code only: a ``bad_answer``'s field and message hold the user's text."""
    logger.thread_safe_append_keys(outcome=str(code), code=str(code))


def note_outcome(outcome: str) -> None:
    logger.thread_safe_append_keys(outcome=outcome)


def route_of(request: Request | None) -> str:
    if request is None:
        return "invalid"
    if request.method == "OPTIONS":
        return "preflight"
    if request.method == "GET":
        return "openapi" if is_document_path(request.path) else "info"
    return "classify" if request.method == "POST" else "other"


def observe(request: Request | None, answer: Callable[[], Response], *, request_id: str | None = None,
            in_lambda: bool = False) -> Response:
    """Answer a request with ``answer()`` and write its one log line and its metrics.

    ``in_lambda``: the handler's Powertools decorators add ``cold_start`` and flush the metrics.
    ``request`` is only looked at for its method and path; the response gets an ``X-Request-Id``.
    """
    logger.thread_safe_clear_keys()
    route = route_of(request)
    request_id = request_id or uuid.uuid4().hex
    start = time.perf_counter()
    response = answer()
    latency_ms = round((time.perf_counter() - start) * 1000, 1)
    response.headers[REQUEST_ID_HEADER] = request_id
    status = response.status_code
    facts = logger.thread_safe_get_current_keys()
    outcome = str(facts.get("outcome") or (route if status < 400 else f"http_{status}"))
    extra: dict[str, object] = {"request_id": request_id, "route": route, "outcome": outcome, "http_status": status,
                                "latency_ms": latency_ms,
                                "request_bytes": request.content_length if request else None}
    if not in_lambda:
        extra["cold_start"] = next(_requests) == 0
    write = logger.error if status >= 500 else logger.info
    write("request", extra={key: value for key, value in extra.items() if value is not None})
    with _flushing:
        metrics.add_dimensions(service=SERVICE, outcome=outcome)
        if facts.get("triage_level"):
            metrics.add_dimensions(service=SERVICE, triage_level=str(facts["triage_level"]))
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency_ms)
        if status >= 400:
            metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
        if status >= 500:
            metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        if facts.get("status") == "not_recognised":
            metrics.add_metric(name="NotRecognised", unit=MetricUnit.Count, value=1)
        if not in_lambda:
            metrics.flush_metrics()
    return response


@functools.cache
def preload_model() -> None:
    """Load the model now (a container's init phase), timed: ``ModelLoadTime`` and a log line.

    Once per process (functions-framework may execute the entry module more than once). A failure
    is logged and left for the first request to retry (answered 503 until it works).
    """
    from skinscan.service import install, load_classifier
    from skinscan.store import ModelUnavailable

    start = time.perf_counter()
    try:
        classifier = load_classifier()
    except ModelUnavailable:
        logger.warning("model load failed", extra={"outcome": str(ErrorCode.MODEL_UNAVAILABLE)})
        metrics.add_metric(name="ModelLoadFailures", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        return
    elapsed = round((time.perf_counter() - start) * 1000, 1)
    install(classifier)
    note_model(classifier.model_info)
    logger.info("model loaded", extra={"model_load_ms": elapsed})
    metrics.add_metric(name="ModelLoadTime", unit=MetricUnit.Milliseconds, value=elapsed)
    metrics.flush_metrics()
