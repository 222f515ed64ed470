"""The classify function for Google's functions-framework.

    functions-framework --source functions/main.py --target classify --port 8080

All behaviour lives in :mod:`functions.http_api`; this file only names the target, and wraps
each request in :func:`functions.observability.observe` (one JSON log line and one EMF metrics
line per request, on stdout). ``SKINSCAN_PRELOAD=1`` loads the model at start, as on Lambda.
"""

import os

import functions_framework
from flask import Request

from functions import observability
from functions.http_api import respond
from skinscan import configure_process

configure_process()
observability.configure()

if os.environ.get("SKINSCAN_PRELOAD") == "1":
    observability.preload_model()


@functions_framework.http
def classify(request: Request):
    return observability.observe(request, lambda: respond(request))
