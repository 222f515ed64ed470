"""SigV4 signing of calls to an IAM-protected classify function URL (issue 14, the bot's path).

A stand-in for the function URL on 127.0.0.1 does what Lambda does before it
invokes anything: it requires ``Authorization: AWS4-HMAC-SHA256 ...`` with
``host;x-amz-content-sha256;x-amz-date`` signed, an ``X-Amz-Date`` close to now,
``x-amz-content-sha256`` equal to the SHA-256 of the body it received, and a
signature that it recomputes itself (with botocore, from the same static test
credentials). It answers 403 otherwise, as a function URL does. One test also
recomputes a signature with nothing but hashlib/hmac, from the AWS spec.
No AWS is contacted; the credentials are fake.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import importlib
import importlib.util
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]

try:
    signing = importlib.import_module("skinscan_client.signing")
except ImportError:  # the package is not installed (yet): load the module from its file
    _spec = importlib.util.spec_from_file_location("skinscan_client_signing",
                                                    REPO / "shared" / "skinscan_client" / "signing.py")
    signing = sys.modules["skinscan_client_signing"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(signing)

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

ACCESS_KEY, SECRET_KEY, REGION = "AKIDEXAMPLETESTONLY0", "test-secret-key-not-real", "eu-west-1"
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$")
REQUIRED_SIGNED = {"host", "x-amz-content-sha256", "x-amz-date"}
RESULT = {"status": "ok", "predictions": [],
          "recommendation": {"level": "routine", "see_doctor": False, "message": "m"},
          "disclaimer": "not a diagnosis",
          "model": {"name": "m", "version": "1", "sha256": "0" * 64, "backend": "fake"}}


def check_signature(method: str, path: str, headers, body: bytes, credentials: Credentials,
                    region: str = REGION) -> str | None:
    """What Lambda would object to, or None when the request is properly signed."""
    match = AUTHORIZATION.match(headers.get("Authorization", ""))
    if not match:
        return "no AWS4-HMAC-SHA256 Authorization header"
    signed = match["signed"].split(";")
    if not REQUIRED_SIGNED <= set(signed):
        return f"SignedHeaders lacks {sorted(REQUIRED_SIGNED - set(signed))}"
    if (match["key"], match["region"], match["service"]) != (credentials.access_key, region, "lambda"):
        return f"wrong credential scope {match['key']}/{match['region']}/{match['service']}"
    amz_date = headers.get("X-Amz-Date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "X-Amz-Date missing or malformed"
    if abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) > 300 or match["date"] != amz_date[:8]:
        return "X-Amz-Date is not now"
    if headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        return "x-amz-content-sha256 is not the SHA-256 of the body"
    # Recompute the signature from what arrived, over exactly the headers it claims to sign.
    request = AWSRequest(method=method, url=f"http://{headers['host']}{path}", data=body,
                         headers={name: headers[name] for name in signed})
    request.context["timestamp"] = amz_date
    verifier = SigV4Auth(credentials, "lambda", region)
    canonical = verifier.canonical_request(request)
    expected = verifier.signature(verifier.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return "signature mismatch"
    return None


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, credentials: Credentials):
        super().__init__(("127.0.0.1", 0), StandInHandler)
        self.credentials = credentials
        self.seen: list[dict] = []


class StandInHandler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        problem = check_signature(self.command, self.path, self.headers, body, self.server.credentials)
        self.server.seen.append({"headers": dict(self.headers), "body_size": len(body), "problem": problem})
        status, payload = (403, {"Message": "Forbidden", "why": problem}) if problem else (200, RESULT)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


@pytest.fixture
def credentials() -> Credentials:
    return Credentials(ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def stand_in(credentials):
    server = StandIn(credentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def auth(credentials) -> httpx.Auth:
    return signing.AwsSigV4Auth(region=REGION, credentials=credentials)


def test_a_signed_multipart_post_is_accepted(stand_in, credentials, photo):
    server, url = stand_in
    with httpx.Client(auth=auth(credentials), timeout=10) as client:
        response = client.post(url, files={"image": ("p.jpg", photo, "image/jpeg")},
                               data={"changed_size": "yes"})
    assert response.status_code == 200, response.text
    (seen,) = server.seen
    assert seen["problem"] is None
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + ACCESS_KEY)
    signed = AUTHORIZATION.match(headers["authorization"])["signed"].split(";")
    assert signed == ["host", "x-amz-content-sha256", "x-amz-date"], "only the stable headers are signed"
    assert re.fullmatch(r"\d{8}T\d{6}Z", headers["x-amz-date"])
    assert re.fullmatch(r"[0-9a-f]{64}", headers["x-amz-content-sha256"])


def test_the_async_client_signs_too_and_a_session_token_is_signed(stand_in, photo):
    server, url = stand_in
    server.credentials = temporary = Credentials(ACCESS_KEY, SECRET_KEY, token="session-token-of-a-lambda-role")

    async def call():
        async with httpx.AsyncClient(auth=auth(temporary), timeout=10) as client:
            return await client.post(url + "?changed_size=no", content=photo,
                                     headers={"Content-Type": "image/jpeg"})

    response = asyncio.run(call())
    assert response.status_code == 200, response.text
    headers = {k.lower(): v for k, v in server.seen[0]["headers"].items()}
    assert headers["x-amz-security-token"] == "session-token-of-a-lambda-role"
    assert "x-amz-security-token" in AUTHORIZATION.match(headers["authorization"])["signed"].split(";")


def test_unsigned_tampered_or_foreign_requests_are_refused(stand_in, credentials, photo):
    server, url = stand_in
    with httpx.Client(timeout=10) as client:
        assert client.post(url, content=photo, headers={"Content-Type": "image/jpeg"}).status_code == 403
        # Signed for one body, sent with another: the payload hash gives it away.
        request = client.build_request("POST", url, content=photo, headers={"Content-Type": "image/jpeg"})
        auth(credentials).sign(request)
        tampered = client.build_request("POST", url, content=photo[:-1] + b"\0",
                                        headers={**request.headers, "Content-Length": str(len(photo))})
        assert client.send(tampered).status_code == 403
        # Signed with another secret: the signature gives it away.
        foreign = client.build_request("POST", url, content=photo, headers={"Content-Type": "image/jpeg"})
        auth(Credentials(ACCESS_KEY, "another-secret")).sign(foreign)
        assert client.send(foreign).status_code == 403
    problems = [seen["problem"] for seen in server.seen]
    assert problems == ["no AWS4-HMAC-SHA256 Authorization header",
                        "x-amz-content-sha256 is not the SHA-256 of the body", "signature mismatch"]


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def test_the_signature_matches_the_aws_spec_computed_by_hand(credentials):
    """Independent of botocore: the SigV4 recipe written out for a POST to a function URL."""
    body = b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nxyz\r\n--b--\r\n"
    request = httpx.Request("POST", "https://abcdefghij0123456789abcdefghij01.lambda-url.eu-west-1.on.aws/",
                            content=body, headers={"Content-Type": "multipart/form-data; boundary=b",
                                                   "User-Agent": "proxies may change this"})
    signing.AwsSigV4Auth(credentials=credentials).sign(request)  # region from the URL's host
    amz_date, payload_hash = request.headers["X-Amz-Date"], hashlib.sha256(body).hexdigest()
    assert request.headers["x-amz-content-sha256"] == payload_hash
    canonical = "\n".join(["POST", "/", "",
                           f"host:{request.url.host}", f"x-amz-content-sha256:{payload_hash}",
                           f"x-amz-date:{amz_date}", "",
                           "host;x-amz-content-sha256;x-amz-date", payload_hash])
    scope = f"{amz_date[:8]}/eu-west-1/lambda/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{SECRET_KEY}".encode(), amz_date[:8]), "eu-west-1"), "lambda"),
                "aws4_request")
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert request.headers["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={expected}")


def test_signing_is_switched_on_by_configuration():
    assert signing.auth_from_env({}) is None
    assert signing.auth_from_env({"SKINSCAN_FUNCTION_AUTH": "none"}) is None
    configured = signing.auth_from_env({"SKINSCAN_FUNCTION_AUTH": "AWS_IAM", "AWS_REGION": "eu-central-1"})
    assert isinstance(configured, signing.AwsSigV4Auth) and isinstance(configured, httpx.Auth)
    assert (configured.region, configured.service) == ("eu-central-1", "lambda")
    with pytest.raises(ValueError, match="SKINSCAN_FUNCTION_AUTH"):
        signing.auth_from_env({"SKINSCAN_FUNCTION_AUTH": "api_key"})


def test_region_comes_from_the_environment_or_the_function_url():
    assert signing.region_of_url("https://abc123.lambda-url.ap-southeast-2.on.aws/") == "ap-southeast-2"
    assert signing.region_of_url("https://abc123.lambda-url.us-gov-west-1.on.aws/x?y=1") == "us-gov-west-1"
    assert signing.region_of_url("http://127.0.0.1:8080/") is None
    assert signing.AwsSigV4Auth(environ={"AWS_DEFAULT_REGION": "us-east-2"}).region == "us-east-2"
    unsigned = httpx.Request("POST", "http://127.0.0.1:9/", content=b"x")
    with pytest.raises(signing.SigningError, match="AWS_REGION"):
        signing.AwsSigV4Auth(environ={}, credentials=Credentials("a", "b")).sign(unsigned)


def test_without_credentials_signing_fails_with_a_clear_message(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    request = httpx.Request("POST", "https://abc.lambda-url.eu-west-1.on.aws/", content=b"x")
    with pytest.raises(signing.SigningError, match="no AWS credentials"):
        signing.AwsSigV4Auth().sign(request)


def test_the_function_client_signs_through_its_auth_hook(stand_in, credentials, photo):
    """The one client (web and bot) with the signer plugged in, as the bot runs it in Lambda."""
    client_module = pytest.importorskip("skinscan_client")
    if not hasattr(client_module, "FunctionClient"):
        pytest.skip("skinscan_client.FunctionClient is not there yet")
    server, url = stand_in
    client = client_module.FunctionClient(url, timeout=10, auth=auth(credentials))
    result = client.classify(photo, filename="p.jpg", answers={"changed_size": "yes"})
    assert result.status == "ok"
    assert asyncio.run(client.aclassify(photo)).status == "ok"
    assert [seen["problem"] for seen in server.seen] == [None, None]


def test_the_bot_signs_when_the_stack_says_so(monkeypatch, stand_in, credentials, photo):
    """serverless.yml gives the bot SKINSCAN_FUNCTION_AUTH=aws_iam; its function client then signs."""
    pytest.importorskip("telegram")
    from bot.app import BotSettings, build_application
    from bot.handlers import SERVICES

    settings = BotSettings(token="123456:" + "A" * 35, function_url=stand_in[1])
    monkeypatch.delenv("SKINSCAN_FUNCTION_AUTH", raising=False)
    assert build_application(settings, with_updater=False).bot_data[SERVICES].auth is None
    monkeypatch.setenv("SKINSCAN_FUNCTION_AUTH", "aws_iam")
    monkeypatch.setenv("AWS_REGION", REGION)
    services = build_application(settings, with_updater=False).bot_data[SERVICES]
    assert isinstance(services.auth, signing.AwsSigV4Auth) and services.auth.region == REGION
    services.auth._credentials = credentials  # the role's credentials, in Lambda
    assert asyncio.run(services.client.aclassify(photo)).status == "ok"
    assert stand_in[0].seen[-1]["problem"] is None
