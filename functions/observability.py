"""Logs and metrics an operator can use: Powertools for AWS Lambda (Logger + Metrics in EMF).

Every request to the classify function (functions-framework or Lambda) ends in

* **one JSON log line** (``"message": "request"``) with ``request_id``, ``route``, ``outcome``
  (the result's ``status`` or the error's ``code``), ``http_status``, ``latency_ms``,
  ``cold_start``, ``model_version``, ``model_backend``, the ``triage_level`` and, when answers were
  given, the checklist ``checklist_score``/``checklist_level``; and
* **one CloudWatch embedded-metric-format line** in namespace ``skinscan``: ``Requests``,
  ``Latency`` (ms), ``Errors`` and ``ServerErrors``, ``NotRecognised``, ``ColdStart``, published
  per ``service`` and also per ``service``+``outcome`` (so ``Errors`` by ``outcome`` are the
  errors by code) and per ``service``+``triage_level`` (so ``Requests`` by ``triage_level`` are
  the level counts). Loading the model at start (``SKINSCAN_PRELOAD=1``) adds ``ModelLoadTime`` (ms).

Both go to stdout (Lambda sends stdout to CloudWatch Logs, which extracts the EMF metrics;
locally they are plain lines). What is never logged: the image, its size in pixels, EXIF or
any metadata, file names, the URL path or query, headers, or any text the user sent; the
checklist answers appear only as their score and level, and a ``bad_answer`` only as its code
(its ``field`` is the user's text). Everything logged comes from the response we built, the
clock, and the configuration.

Service and namespace: ``POWERTOOLS_SERVICE_NAME`` (default ``skinscan-classify``) and
``POWERTOOLS_METRICS_NAMESPACE`` (default ``skinscan``); ``POWERTOOLS_METRICS_DISABLED=true``
turns the metric lines off; ``SKINSCAN_LOG_LEVEL`` sets the level (default INFO).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from werkzeug.wrappers import Request, Response

from functions.contract import is_document_path

DEFAULT_SERVICE = "skinscan-classify"
DEFAULT_NAMESPACE = "skinscan"
REQUEST_ID_HEADER = "X-Request-Id"


def service_name(default: str = DEFAULT_SERVICE) -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or default


def namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE


def log_level() -> str:
    return os.environ.get("SKINSCAN_LOG_LEVEL", "INFO").upper()


class StdoutHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stdout`` is at the time of each line.

    A handler holding the ``sys.stdout`` of import time writes into a closed stream once a test
    runner (or anything else) has swapped it; EMF lines are ``print``-ed to the current one too.
    """

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


class Telemetry:
    """One service's JSON logger and per-request EMF metrics; thread-safe (threaded servers)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.logger = Logger(service=service, level=log_level(), use_rfc3339=True,
                             logger_handler=StdoutHandler())
        self.logger.remove_keys(["location"])  # always this module's line: noise
        # Our handler writes the line; the root logger (Lambda's, or a dev server's) must not
        # print it a second time in its own format.
        logging.getLogger(service).propagate = False
        self._cold = True
        self._lock = threading.Lock()

    def take_cold_start(self) -> bool:
        """True for the first request this process answers, then False."""
        with self._lock:
            cold, self._cold = self._cold, False
            return cold

    def log(self, message: str, fields: dict[str, Any], level: int = logging.INFO) -> None:
        self.logger.log(level, message, extra={k: v for k, v in fields.items() if v is not None})

    def metrics(self, values: list[tuple[str, MetricUnit, float]],
                dimensions: dict[str, str | None] | None = None) -> None:
        """Print one EMF line: ``values`` under ``service``, and also per each given dimension."""
        emf = EphemeralMetrics(namespace=namespace(), service=self.service)
        for name, value in (dimensions or {}).items():
            if value:
                emf.add_dimensions(service=self.service, **{name: str(value)})
        for name, unit, value in values:
            emf.add_metric(name=name, unit=unit, value=value)
        with warnings.catch_warnings():  # "no metrics to publish" is not worth a warning line
            warnings.simplefilter("ignore")
            emf.flush_metrics(raise_on_empty_metrics=False)


_telemetry: Telemetry | None = None
_telemetry_lock = threading.Lock()
_preloaded = False
_model: dict[str, Any] = {}  # the last model seen in an answer (or loaded at start): version, backend


def telemetry() -> Telemetry:
    global _telemetry
    with _telemetry_lock:
        if _telemetry is None:
            _telemetry = Telemetry(service_name())
        return _telemetry


def configure() -> None:
    """Process-wide logging for an entry point (instead of plain-text ``basicConfig``).

    Other loggers (``skinscan.*`` warnings, tracebacks) write JSON too: on stderr under a dev
    server where nothing has configured logging, through Lambda's own handler under Lambda.
    A host that configured logging itself (a test runner, an app embedding us) is left alone.
    """
    root = logging.getLogger()
    formatter = LambdaPowertoolsFormatter(service=service_name(), use_rfc3339=True)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
        root.setLevel(log_level())
    elif os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        for handler in root.handlers:
            handler.setFormatter(formatter)
        root.setLevel(log_level())
    telemetry()


def preload_model() -> None:
    """Load the model now (a container's init phase), timed: ``ModelLoadTime`` and a log line.

    A failure is logged and left for the first request to retry (answered 503 until it works).
    """
    from skinscan.service import install, load_classifier
    from skinscan.store import ModelUnavailable

    global _preloaded
    with _telemetry_lock:
        if _preloaded:  # functions-framework may execute the entry module more than once
            return
        _preloaded = True
    tel = telemetry()
    start = time.perf_counter()
    try:
        classifier = load_classifier()
    except ModelUnavailable:
        tel.log("model load failed", {"outcome": "model_unavailable"}, logging.WARNING)
        tel.metrics([("ModelLoadFailures", MetricUnit.Count, 1)])
        return
    elapsed = round((time.perf_counter() - start) * 1000, 1)
    install(classifier)
    _remember_model(classifier.model_info.to_wire())
    tel.log("model loaded", {"model_load_ms": elapsed, **_model})
    tel.metrics([("ModelLoadTime", MetricUnit.Milliseconds, elapsed)])


def _remember_model(model: Any) -> None:
    if isinstance(model, dict):
        _model.update(model_version=model.get("version"), model_backend=model.get("backend"))


def route_of(request: Request | None) -> str:
    if request is None:
        return "invalid"
    if request.method == "OPTIONS":
        return "preflight"
    if request.method == "GET":
        return "openapi" if is_document_path(request.path) else "info"
    return "classify" if request.method == "POST" else "other"


def summarise(route: str, response: Response) -> dict[str, Any]:
    """What the log line says about an answer: only fields of our own JSON, never user text."""
    fields: dict[str, Any] = {"http_status": response.status_code}
    if route in ("openapi", "preflight") or response.mimetype != "application/json":
        fields["outcome"] = route if response.status_code < 400 else f"http_{response.status_code}"
        return fields
    try:
        body = response.get_json(silent=True)
    except Exception:
        body = None
    if not isinstance(body, dict):
        fields["outcome"] = f"http_{response.status_code}"
        return fields
    error = body.get("error")
    if isinstance(error, dict):
        fields["outcome"] = fields["code"] = str(error.get("code"))
        return fields
    _remember_model(body.get("model"))
    if route == "info":
        fields["outcome"] = "ready"
        return fields
    fields["outcome"] = fields["status"] = str(body.get("status"))
    recommendation = body.get("recommendation")
    if isinstance(recommendation, dict):
        fields["triage_level"] = recommendation.get("level")
        fields["see_doctor"] = recommendation.get("see_doctor")
        fields["raised_by"] = recommendation.get("raised_by")
    checklist = body.get("checklist")
    if isinstance(checklist, dict):
        fields["checklist_score"] = checklist.get("score")
        fields["checklist_level"] = checklist.get("level") or "none"
    return fields


def observe(request: Request | None, answer: Callable[[], Response],
            request_id: str | None = None) -> Response:
    """Answer a request with ``answer()`` and write its one log line and one EMF line.

    ``request`` is only looked at for its method and whether the path is the OpenAPI document;
    the log never holds anything the client sent. The response gets an ``X-Request-Id``.
    """
    tel = telemetry()
    cold = tel.take_cold_start()
    request_id = request_id or uuid.uuid4().hex
    route = route_of(request)
    start = time.perf_counter()
    response = answer()
    latency_ms = round((time.perf_counter() - start) * 1000, 1)
    response.headers[REQUEST_ID_HEADER] = request_id
    try:
        fields = summarise(route, response)
        status = fields["http_status"]
        fields = {"request_id": request_id, "route": route, **fields, "latency_ms": latency_ms,
                  "cold_start": cold, "request_bytes": request.content_length if request else None,
                  **_model}
        tel.log("request", fields, logging.ERROR if status >= 500 else logging.INFO)
        values = [("Requests", MetricUnit.Count, 1), ("Latency", MetricUnit.Milliseconds, latency_ms)]
        if status >= 400:
            values.append(("Errors", MetricUnit.Count, 1))
        if status >= 500:
            values.append(("ServerErrors", MetricUnit.Count, 1))
        if fields.get("status") == "not_recognised":
            values.append(("NotRecognised", MetricUnit.Count, 1))
        if cold:
            values.append(("ColdStart", MetricUnit.Count, 1))
        tel.metrics(values, {"outcome": fields.get("outcome"), "triage_level": fields.get("triage_level")})
    except Exception:  # telemetry must never cost the caller their answer
        logging.getLogger("skinscan.observability").exception("could not record the request")
    return response
