"""The classify function for Google's functions-framework.

    functions-framework --source functions/main.py --target classify --port 8080

All behaviour lives in :mod:`functions.http_api`; this file only names the target.
"""

import functions_framework
from flask import Request

from functions.http_api import respond
from skinscan.logs import configure_logging

configure_logging()


@functions_framework.http
def classify(request: Request):
    return respond(request)
