"""The same classify function behind AWS Lambda (function URL, HTTP API v2 or REST v1 events).

apig-wsgi turns the event into a WSGI request for the very :func:`functions.http_api.respond`
that functions-framework serves, so Lambda and functions-framework share every status code and
JSON shape. Powertools' decorators add the invocation's context (``cold_start``, the function's
name and request id) to the log line and flush its metrics, with Powertools' own ``ColdStart``.
An event apig-wsgi cannot read (not a dict, no method, a body that is not base64) is a 400
``bad_request``: it is the caller's mistake, never a 500.
"""

from __future__ import annotations

import os
from typing import Any

from apig_wsgi import make_lambda_handler
from aws_lambda_powertools.utilities.typing import LambdaContext
from werkzeug.wrappers import Request, Response

from functions import observability
from functions.http_api import error_response, respond
from functions.observability import logger, metrics
from skinscan import configure_process
from skinscan.contract import ErrorCode

NOT_AN_HTTP_EVENT = "The event is not an HTTP request (or its body is not valid base64)."

configure_process()

if os.environ.get("SKINSCAN_PRELOAD") == "1":
    # Load during Lambda's init phase (timed: ModelLoadTime); a failure is answered as 503 per
    # request, and retried then.
    observability.preload_model()


@Request.application
def _answer(request: Request) -> Response:
    context = request.environ.get("apig_wsgi.context")
    return observability.observe(request, lambda: respond(request), in_lambda=True,
                                 request_id=getattr(context, "aws_request_id", None))


_from_event = make_lambda_handler(_answer, binary_support=True)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return _from_event(event, context)
    except (AttributeError, KeyError, TypeError, ValueError):  # apig-wsgi could not read the event
        response = observability.observe(None, lambda: error_response(ErrorCode.BAD_REQUEST, NOT_AN_HTTP_EVENT),
                                         request_id=context.aws_request_id, in_lambda=True)
        return {"statusCode": response.status_code, "headers": dict(response.headers),
                "body": response.get_data(as_text=True), "isBase64Encoded": False}
