"""The classify function for Google's functions-framework.

    functions-framework --source functions/main.py --target classify --port 8080

All behaviour lives in :mod:`functions.http_api`; this file only names the target, and wraps
each request in :func:`functions.observability.observe` (one JSON log line and one EMF metrics
line per request, on stdout). ``SKINSCAN_PRELOAD=1`` loads the model at start, as on Lambda.
Other log lines (``skinscan.*`` warnings) are plain text on stderr, at ``SKINSCAN_LOG_LEVEL``.
"""

import os

import functions_framework
from flask import Request
from werkzeug.wrappers import Response

from functions import observability
from functions.http_api import respond
from skinscan import configure_process
from skinscan.logs import configure_logging

configure_process()
configure_logging()

if os.environ.get("SKINSCAN_PRELOAD") == "1":
    observability.preload_model()


@functions_framework.http
def classify(request: Request) -> Response:
    return observability.observe(request, lambda: respond(request))
