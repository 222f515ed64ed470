"""SigV4 signing for a classify function URL whose ``AuthType`` is ``AWS_IAM`` (issue 14).

In the deployed stack the classify function URL accepts only signed requests:
CloudFront signs the page's requests (origin access control), and the Telegram
bot signs its own with its Lambda role. :class:`AwsSigV4Auth` is an
``httpx.Auth``, so it plugs into :class:`skinscan_client.FunctionClient`
(``auth=``) or any httpx client, sync or async.

Each request is signed with botocore's ``SigV4Auth`` for the service
``lambda``: ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=
host;x-amz-content-sha256;x-amz-date[;x-amz-security-token], Signature=...``,
``X-Amz-Date``, ``x-amz-content-sha256`` (hex SHA-256 of the exact body: Lambda
accepts no unsigned payloads) and, with temporary credentials (a Lambda role),
``X-Amz-Security-Token``. Only those headers are signed, so a proxy that
rewrites ``User-Agent`` or ``Accept-Encoding`` cannot break the signature.

Credentials come from botocore's default chain (in Lambda: the function
role's variables), looked up when the first request is signed and refreshed
by botocore when they are temporary. The region is ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` or, failing that, read from the function URL's host
(``<id>.lambda-url.<region>.on.aws``).

Configuration: ``SKINSCAN_FUNCTION_AUTH=aws_iam`` turns signing on
(:func:`auth_from_env`); unset or ``none`` sends plain requests (local stack).

botocore is imported lazily: a client that never signs does not need it
(the Lambda image has it through boto3).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Generator, Mapping
from typing import Any

import httpx

__all__ = ["AUTH_ENV", "AwsSigV4Auth", "SigningError", "auth_from_env", "region_of_url"]

AUTH_ENV = "SKINSCAN_FUNCTION_AUTH"
SERVICE = "lambda"
_LAMBDA_URL_HOST = re.compile(r"^[a-z0-9]+\.lambda-url\.([a-z]{2}(?:-[a-z]+)+-\d)\.on\.aws$")
# What botocore may add besides the two headers we set; copied onto the outgoing request.
_SIGNATURE_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256")


class SigningError(RuntimeError):
    """A request could not be signed (no credentials, no region). The message names what is missing."""


def region_of_url(url: str | httpx.URL) -> str | None:
    """``eu-west-1`` for ``https://abc.lambda-url.eu-west-1.on.aws/``; None for any other host."""
    match = _LAMBDA_URL_HOST.match(httpx.URL(str(url)).host)
    return match.group(1) if match else None


class AwsSigV4Auth(httpx.Auth):
    """Sign each request with AWS Signature Version 4 (service ``lambda`` unless told otherwise).

    ``credentials``: a botocore ``Credentials`` (or anything with ``access_key``, ``secret_key``,
    ``token``); default: botocore's default chain. ``region``: default from the environment, else
    from the URL's host.
    """

    requires_request_body = True  # the payload hash needs the whole body (httpx reads streams first)

    def __init__(self, *, region: str | None = None, service: str = SERVICE, credentials: Any = None,
                 environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        self.service = service
        self._credentials = credentials

    def _current_credentials(self) -> Any:
        if self._credentials is None:
            import botocore.session

            self._credentials = botocore.session.get_session().get_credentials()
            if self._credentials is None:
                raise SigningError("no AWS credentials found (botocore's default chain) to sign the "
                                   f"request; set them, or {AUTH_ENV}=none for an unauthenticated URL")
        frozen = getattr(self._credentials, "get_frozen_credentials", None)
        return frozen() if frozen else self._credentials  # one consistent key/secret/token triple

    def sign(self, request: httpx.Request) -> None:
        """Add the SigV4 headers to ``request`` (its body must have been read)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        region = self.region or region_of_url(request.url)
        if not region:
            raise SigningError(f"no AWS region to sign for {request.url.host}: set AWS_REGION")
        body = request.content
        host = request.headers.get("host") or request.url.netloc.decode("ascii")
        signable = AWSRequest(method=request.method, url=str(request.url), data=body,
                              headers={"host": host,
                                       "x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
        SigV4Auth(self._current_credentials(), self.service, region).add_auth(signable)
        for name in _SIGNATURE_HEADERS:
            value = signable.headers.get(name)
            if value:
                request.headers[name] = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


def auth_from_env(environ: Mapping[str, str] | None = None) -> httpx.Auth | None:
    """The auth ``SKINSCAN_FUNCTION_AUTH`` asks for: ``aws_iam`` -> :class:`AwsSigV4Auth`; unset or
    ``none`` -> None (plain requests). Anything else is a configuration error (ValueError)."""
    env = os.environ if environ is None else environ
    mode = (env.get(AUTH_ENV) or "none").strip().lower()
    if mode == "none":
        return None
    if mode == "aws_iam":
        return AwsSigV4Auth(environ=env)
    raise ValueError(f"{AUTH_ENV}={mode!r}: expected 'aws_iam' (SigV4 with the role's credentials) or 'none'")
