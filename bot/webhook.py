"""The bot behind a webhook: a stateless HTTP entry point for AWS Lambda (or functions-framework).

Telegram POSTs each update with the secret we registered
(``skinscan bot set-webhook URL``) in ``X-Telegram-Bot-Api-Secret-Token``.
:func:`handle_webhook` is the whole contract as a plain function of headers
and body, so every adapter (Lambda's :func:`handler`, the functions-framework
target :func:`telegram_webhook`, tests) shares it:

* wrong or missing secret: 403, and nothing is parsed or processed;
* not a Telegram update (malformed JSON, no ``update_id``): 200, ignored, so
  Telegram does not redeliver garbage forever;
* an ``update_id`` this container has already handled (Telegram retries):
  200, not processed again;
* otherwise the update goes through the same handlers as polling, then 200.

PTB's Application is bound to the event loop it was initialised in; reusing
it under a fresh ``asyncio.run`` per invocation fails with "Event loop is
closed" (PTB #4023, #5021). So each container keeps one event loop on a
background thread, and one initialised Application on it, for its lifetime:
no ``getMe`` per update, and the per-chat rate limiter survives between
updates. Concurrent requests (functions-framework threads) are fine: they
submit to the same loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import json
import logging
import os
import threading
from collections import OrderedDict
from typing import Any

from apig_wsgi import make_lambda_handler
from aws_lambda_powertools.utilities.typing import LambdaContext
from telegram import Update
from telegram.ext import Application
from werkzeug.wrappers import Request, Response

from bot.app import SECRET_RULE, SECRET_TOKEN, BotSettings, build_application, configure_logging, quiet_http_logs
from bot.telemetry import logger, metrics, observe_delivery

log = logging.getLogger("bot.webhook")

SECRET_HEADER = "x-telegram-bot-api-secret-token"


@functools.cache
def _ssm_parameter(name: str) -> str:
    """One SSM read per parameter per container: secrets do not change under a running container."""
    import boto3

    return boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def resolve_secret(name: str) -> str | None:
    """``TELEGRAM_BOT_TOKEN`` etc.: from SSM when ``<name>_PARAM`` names a parameter, else the env."""
    parameter = os.environ.get(f"{name}_PARAM")
    if parameter:
        return _ssm_parameter(parameter)
    return os.environ.get(name) or None


class SeenUpdates:
    """The last ``capacity`` update ids, to drop Telegram's redeliveries (bounded LRU)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, update_id: int) -> bool:
        """Remember ``update_id``; False when it was already there."""
        with self._lock:
            if update_id in self._ids:
                self._ids.move_to_end(update_id)
                return False
            self._ids[update_id] = None
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
            return True

    def discard(self, update_id: int) -> None:
        with self._lock:
            self._ids.pop(update_id, None)


def parse_update(body: bytes | str) -> dict[str, Any] | None:
    """The update as a dict, or None when the body is not one. The body is never logged."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        return None
    return data


class WebhookProcessor:
    """One per container: the secret, the seen-update memory, and the bot on its own event loop."""

    def __init__(self, settings: BotSettings, secret: str, *, remember: int = 1024,
                 budget_s: float = 50.0) -> None:
        if not SECRET_TOKEN.fullmatch(secret or ""):  # the only credential: refuse to run on a weak one
            raise ValueError(SECRET_RULE)
        self.settings = settings
        self._secret = secret.encode()
        self.budget_s = budget_s
        self.seen = SeenUpdates(remember)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._application: Application | None = None

    def authorised(self, headers: dict[str, str]) -> bool:
        provided = next((str(v) for k, v in headers.items() if k.lower() == SECRET_HEADER), "")
        return bool(self._secret) and hmac.compare_digest(provided.encode(), self._secret)

    def handle(self, headers: dict[str, str], body: bytes | str) -> tuple[int, bytes]:
        if not self.authorised(headers):
            log.warning("webhook: refused a request without the right secret")
            return 403, b"forbidden"
        data = parse_update(body)
        if data is None:
            log.warning("webhook: ignored a body that is not a Telegram update")
            return 200, b"ignored"
        update_id = data["update_id"]
        if not self.seen.add(update_id):
            log.info("webhook: update %d already handled", update_id)
            return 200, b"duplicate"
        try:
            loop = self._started()
        except Exception:  # cannot reach Telegram or misconfigured: let Telegram redeliver later
            self.seen.discard(update_id)
            log.exception("webhook: the bot could not start")
            return 503, b"unavailable"
        future = asyncio.run_coroutine_threadsafe(self._process(data), loop)
        try:
            future.result(timeout=self.budget_s)
        except concurrent.futures.TimeoutError:
            log.warning("webhook: update %d still running after %.0f s; answering", update_id,
                        self.budget_s)
        except Exception:
            log.exception("webhook: update %d could not be processed", update_id)
        return 200, b"ok"

    async def _process(self, data: dict[str, Any]) -> None:
        assert self._application is not None
        await self._application.process_update(Update.de_json(data, self._application.bot))

    def _started(self) -> asyncio.AbstractEventLoop:
        """Start the loop thread and initialise the Application, once."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="bot-webhook-loop",
                                          daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            if self._application is None:
                application = build_application(self.settings, with_updater=False)
                asyncio.run_coroutine_threadsafe(application.initialize(), self._loop).result(
                    timeout=self.budget_s)
                self._application = application
            return self._loop

    def close(self) -> None:
        """Shut the Application and the loop down (tests, or a container asked to stop)."""
        with self._lock:
            loop, thread, application = self._loop, self._thread, self._application
            self._loop = self._thread = self._application = None
        if loop is None:
            return
        if application is not None:
            try:
                asyncio.run_coroutine_threadsafe(application.shutdown(), loop).result(timeout=10)
            except Exception:
                log.exception("webhook: shutdown failed")
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()


_default: WebhookProcessor | None = None
_default_lock = threading.Lock()


def default_processor() -> WebhookProcessor:
    """The container's processor, configured from the environment (and SSM) on first use."""
    global _default
    with _default_lock:
        if _default is None:
            configure_logging()
            quiet_http_logs()
            token = resolve_secret("TELEGRAM_BOT_TOKEN")
            secret = resolve_secret("TELEGRAM_WEBHOOK_SECRET")
            function_url = os.environ.get("SKINSCAN_FUNCTION_URL")
            missing = [name for name, value in (("TELEGRAM_BOT_TOKEN", token),
                                                ("TELEGRAM_WEBHOOK_SECRET", secret),
                                                ("SKINSCAN_FUNCTION_URL", function_url)) if not value]
            if missing or not (token and secret and function_url):
                raise RuntimeError(f"webhook not configured: set {', '.join(missing)}")
            _default = WebhookProcessor(BotSettings.from_env(token, function_url), secret)
        return _default


def reset() -> None:
    """Forget the container's processor and cached secrets (tests; a changed configuration)."""
    global _default
    with _default_lock:
        processor, _default = _default, None
    if processor is not None:
        processor.close()
    _ssm_parameter.cache_clear()


def handle_webhook(headers: dict[str, str], body: bytes | str, processor: WebhookProcessor | None = None, *,
                   in_lambda: bool = False) -> tuple[int, bytes]:
    """Answer one webhook delivery: ``(status, body)``. See the module docstring for the rules.

    Each delivery writes one JSON log line and one EMF metrics line (:mod:`bot.telemetry`).
    """
    return observe_delivery(body, lambda: (processor or default_processor()).handle(headers, body),
                            in_lambda=in_lambda)


@Request.application
def _delivery(request: Request) -> Response:
    status, payload = handle_webhook(dict(request.headers), request.get_data(), in_lambda=True)
    return Response(payload, status=status, mimetype="text/plain")


_from_event = make_lambda_handler(_delivery, binary_support=True)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """AWS Lambda entry point (function URL, or API Gateway HTTP API v2 / REST v1 events), via apig-wsgi.

    An event it cannot read carries no secret we could check: 403, as any unauthorised delivery.
    """
    try:
        return _from_event(event, context)
    except (AttributeError, KeyError, TypeError, ValueError):
        status, payload = handle_webhook({}, b"", in_lambda=True)
        return {"statusCode": status, "headers": {"content-type": "text/plain"}, "body": payload.decode(),
                "isBase64Encoded": False}


def telegram_webhook(request: Request) -> tuple[bytes, int, dict[str, str]]:
    """functions-framework target (``--target telegram_webhook``); ``request`` is Flask's."""
    status, payload = handle_webhook(dict(request.headers), request.get_data())
    return payload, status, {"Content-Type": "text/plain"}
