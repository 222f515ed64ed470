"""Building the bot, and running it by polling (local use) or registering its webhook.

One :func:`build_application` serves both modes: polling (``skinscan bot``,
``skinscan serve``) and the serverless webhook (:mod:`bot.webhook`) run the
very same handlers. The Bot API server is configuration
(``TELEGRAM_API_BASE_URL``), so the bot also talks to a self-hosted Bot API
server or to the test emulator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass

import httpx
from telegram import Bot, BotCommand
from telegram.ext import Application, ApplicationBuilder

from skinscan.i18n import ENGLISH, LANGUAGES, N_, Translator, translator
from skinscan_client import MAX_UPLOAD_BYTES
from skinscan_client.signing import auth_from_env

from .handlers import RateLimiter, Services, register

DEFAULT_API_BASE_URL = "https://api.telegram.org"
# All the bot answers (messages, and presses of its question buttons); fewer updates, less to pay for.
ALLOWED_UPDATES = ["message", "callback_query"]
COMMAND_DESCRIPTIONS = {"help": N_("what I do and how to take a good photo"),
                        "privacy": N_("what happens to your photos")}


def commands(tr: Translator = ENGLISH) -> list[BotCommand]:
    """The command menu in one language (Telegram shows each user the one for their language)."""
    return [BotCommand(name, tr.gettext(text)) for name, text in COMMAND_DESCRIPTIONS.items()]


COMMANDS = commands()


async def announce_commands(bot: Bot) -> None:
    """The menu for everyone (English), then one per language we speak."""
    await bot.set_my_commands(COMMANDS)
    for language in (code for code in LANGUAGES if code != ENGLISH.language):
        await bot.set_my_commands(commands(translator(language)), language_code=language)
# Telegram accepts 1-256 of these characters for secret_token; we ask at least 32 (DEPLOY.md makes 64):
# the secret is the webhook's only credential, and a short one can be guessed.
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,256}")
SECRET_RULE = "the webhook secret must be 32-256 characters of A-Z, a-z, 0-9, _ and - (openssl rand -hex 32)"
# Deliveries Telegram makes at once (setWebhook max_connections): the bot function's reserved
# concurrency (serverless.yml botConcurrency), so a burst queues at Telegram instead of being
# throttled by Lambda. Telegram's own default is 40.
DEFAULT_MAX_CONNECTIONS = 2

log = logging.getLogger("bot")


@dataclass(frozen=True)
class BotSettings:
    """Everything the bot needs to know; built from the environment in production."""

    token: str
    function_url: str
    api_base_url: str = DEFAULT_API_BASE_URL
    function_timeout_s: float = 30.0
    rate_limit_per_minute: int = 5
    # The largest photo the deployment the bot talks to takes: the function's own 10 MB, or less
    # where something in front of it caps requests (AWS Lambda: 6 MB of payload, base64: 4 MB).
    max_upload_bytes: int = MAX_UPLOAD_BYTES

    def __post_init__(self) -> None:
        if not 0 < self.max_upload_bytes <= MAX_UPLOAD_BYTES:
            raise ValueError(f"SKINSCAN_BOT_MAX_UPLOAD_BYTES must be 1 to {MAX_UPLOAD_BYTES} "
                             "(the function refuses more)")

    @classmethod
    def from_env(cls, token: str, function_url: str) -> BotSettings:
        return cls(
            token=token,
            function_url=function_url,
            api_base_url=os.environ.get("TELEGRAM_API_BASE_URL") or DEFAULT_API_BASE_URL,
            function_timeout_s=float(os.environ.get("SKINSCAN_BOT_FUNCTION_TIMEOUT", "30")),
            rate_limit_per_minute=int(os.environ.get("SKINSCAN_BOT_RATE_LIMIT", "5")),
            max_upload_bytes=int(os.environ.get("SKINSCAN_BOT_MAX_UPLOAD_BYTES") or MAX_UPLOAD_BYTES),
        )


def api_urls(api_base_url: str) -> tuple[str, str]:
    """The method and file URL prefixes of a Bot API server; PTB appends the token."""
    root = api_base_url.rstrip("/")
    return f"{root}/bot", f"{root}/file/bot"


class _BotApiAnswersNotLogged(logging.Filter):
    """PTB logs every Bot API *answer* at DEBUG, and answers echo people's messages: getUpdates
    returns them, and a reply's answer carries the message it quotes (for an image file, its file
    name). The bot quotes the photo under its result (the question buttons find the photo that
    way), so keep those answers out of the log; the calls themselves are still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "finished with return value" in record.msg \
                and isinstance(record.args, tuple) and record.args:
            record.msg, record.args = "Call to Bot API endpoint `%s` finished (answer not logged)", record.args[:1]
        return True


_ANSWER_FILTER = _BotApiAnswersNotLogged()


def keep_bot_api_answers_out_of_logs() -> None:
    for name in ("telegram.Bot", "telegram.ext.ExtBot"):
        logger = logging.getLogger(name)
        if _ANSWER_FILTER not in logger.filters:
            logger.addFilter(_ANSWER_FILTER)


def build_application(settings: BotSettings, *, with_updater: bool = True,
                      rate_limiter: RateLimiter | None = None, auth: httpx.Auth | None = None) -> Application:
    """The one place an Application is built. ``with_updater=False`` for the webhook.

    ``auth``: an ``httpx.Auth`` for the calls to the classify function (e.g. SigV4 signing);
    default: what ``SKINSCAN_FUNCTION_AUTH`` asks for (``aws_iam`` in the stack, where the
    classify function URL is AWS_IAM; unset: plain requests).
    """
    keep_bot_api_answers_out_of_logs()
    base_url, base_file_url = api_urls(settings.api_base_url)
    builder = (ApplicationBuilder().token(settings.token)
               .base_url(base_url).base_file_url(base_file_url)
               .read_timeout(20.0).write_timeout(20.0))  # photo downloads can take a while
    if not with_updater:
        builder = builder.updater(None)
    application = builder.build()
    register(application, Services(
        function_url=settings.function_url,
        function_timeout_s=settings.function_timeout_s,
        rate_limiter=rate_limiter or RateLimiter(limit=settings.rate_limit_per_minute),
        max_upload_bytes=settings.max_upload_bytes,
        auth=auth if auth is not None else auth_from_env(),
    ))
    return application


def configure_logging() -> None:
    """Plain log lines at SKINSCAN_LOG_LEVEL; never a message's text or photo (see quiet_http_logs)."""
    logging.basicConfig(level=os.environ.get("SKINSCAN_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def quiet_http_logs() -> None:
    """httpx logs every request URL at INFO, and Bot API URLs contain the bot token."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def _announce_commands(application: Application) -> None:
    await announce_commands(application.bot)


def run_polling(token: str, function_url: str) -> None:
    """Run the bot by long polling until Ctrl+C. Blocking; call from the main thread."""
    configure_logging()
    quiet_http_logs()
    settings = BotSettings.from_env(token, function_url)
    application = build_application(settings)
    application.post_init = _announce_commands
    log.info("bot polling %s; classify function at %s", settings.api_base_url, function_url)
    # Polling deletes any webhook first (PTB's bootstrap), so a bot can move between modes.
    application.run_polling(allowed_updates=ALLOWED_UPDATES)


def set_webhook(token: str, url: str, secret: str, api_base_url: str | None = None,
                max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
    """Point Telegram at the webhook; every delivery will carry ``secret`` in a header, and at most
    ``max_connections`` deliveries run at once (the webhook function's concurrency)."""
    if not SECRET_TOKEN.fullmatch(secret or ""):
        raise ValueError(SECRET_RULE)
    if not 1 <= max_connections <= 100:
        raise ValueError("max_connections must be 1-100 (Telegram's range)")
    base_url, base_file_url = api_urls(api_base_url or os.environ.get("TELEGRAM_API_BASE_URL")
                                       or DEFAULT_API_BASE_URL)

    async def register_webhook() -> None:
        async with Bot(token, base_url=base_url, base_file_url=base_file_url) as bot:
            await bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES,
                                  max_connections=max_connections)
            await announce_commands(bot)

    asyncio.run(register_webhook())
