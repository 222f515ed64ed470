"""The bot's conversation: commands, photos, image files, and a polite answer to everything else.

The handlers are the same for polling and for the webhook; what they need
(the function URL, timeouts, the per-chat rate limiter) lives in one
:class:`Services` object in ``bot_data``, so a webhook container can keep its
rate limiter across updates while building nothing else twice.

Images are held in memory only for the time of one request to the classify
function and are never written anywhere or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from telegram import Bot, Message, Update
from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from . import replies
from .function_client import FUNCTION_MAX_BYTES, FunctionError, classify

log = logging.getLogger("bot")

SERVICES = "skinscan"
# getFile refuses larger files for bots on the public Bot API.
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
CHAT_ACTION_REFRESH_S = 4.5  # Telegram shows a chat action for about 5 s


class RateLimiter:
    """At most ``limit`` photos per ``window_s`` seconds per chat (sliding window).

    One chat must not be able to exhaust the classify function for everyone.
    Lives in one event loop, so it needs no lock.
    """

    def __init__(self, limit: int = 5, window_s: float = 60.0, max_chats: int = 10_000) -> None:
        self.limit, self.window_s, self.max_chats = limit, window_s, max_chats
        self._recent: dict[int, deque[float]] = {}

    def acquire(self, chat_id: int, now: float | None = None) -> float | None:
        """Record a photo and return ``None``, or return how many seconds until one is allowed."""
        now = time.monotonic() if now is None else now
        recent = self._recent.setdefault(chat_id, deque())
        while recent and now - recent[0] >= self.window_s:
            recent.popleft()
        if len(recent) >= self.limit:
            return self.window_s - (now - recent[0])
        recent.append(now)
        if len(self._recent) > self.max_chats:
            self._forget_idle(now)
        return None

    def _forget_idle(self, now: float) -> None:
        """Keep memory bounded: drop chats with nothing inside the window."""
        for chat_id in [c for c, r in self._recent.items() if not r or now - r[-1] >= self.window_s]:
            del self._recent[chat_id]


@dataclass
class Services:
    function_url: str
    function_timeout_s: float = 30.0
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return context.bot_data[SERVICES]


def register(application: Application, services_: Services) -> None:
    """Wire the handlers. Order matters: the catch-all answer comes last."""
    application.bot_data[SERVICES] = services_
    new = filters.UpdateType.MESSAGE  # not edits: an edited caption must not re-run an analysis
    application.add_handler(CommandHandler(["start"], start, filters=new))
    application.add_handler(CommandHandler(["help"], help_command, filters=new))
    application.add_handler(CommandHandler(["privacy"], privacy, filters=new))
    application.add_handler(MessageHandler(new & filters.PHOTO, on_photo))
    application.add_handler(MessageHandler(new & filters.Document.IMAGE, on_image_document))
    application.add_handler(MessageHandler(new & filters.Document.ALL, on_other_document))
    application.add_handler(MessageHandler(new & filters.ALL, on_anything_else))
    application.add_error_handler(on_error)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(replies.START)


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(replies.HELP)


async def privacy(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(replies.PRIVACY)


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Telegram sends several sizes of a photo; the last one is the largest."""
    largest = update.effective_message.photo[-1]
    await analyse(update.effective_message, context, largest.file_id, largest.file_size,
                  filename="photo.jpg", content_type="image/jpeg")


async def on_image_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An image sent as a file keeps its full quality, which helps the model."""
    document = update.effective_message.document
    await analyse(update.effective_message, context, document.file_id, document.file_size,
                  filename=document.file_name or "image", content_type=document.mime_type or "image/*")


async def on_other_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(replies.NOT_AN_IMAGE_FILE)


async def on_anything_else(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Text, stickers, videos, voice, unknown commands: never silence, always the way forward."""
    await update.effective_message.reply_text(replies.SEND_A_PHOTO)


async def analyse(message: Message, context: ContextTypes.DEFAULT_TYPE, file_id: str,
                  file_size: int | None, *, filename: str, content_type: str) -> None:
    """Size checks, rate limit, download, classify, one reply. Cheap refusals come first."""
    if file_size and file_size > TELEGRAM_DOWNLOAD_LIMIT:
        await message.reply_text(replies.too_big_for_telegram(file_size, TELEGRAM_DOWNLOAD_LIMIT))
        return
    if file_size and file_size > FUNCTION_MAX_BYTES:
        await message.reply_text(replies.too_big_to_analyse(FUNCTION_MAX_BYTES))
        return
    limiter = services(context).rate_limiter
    retry_after = limiter.acquire(message.chat_id)
    if retry_after is not None:
        log.info("rate limited a chat for %.0f s", retry_after)
        await message.reply_text(replies.rate_limited(limiter.limit, retry_after))
        return

    async with chat_action(context.bot, message.chat_id):
        reply = await classify_attachment(context, file_id, filename, content_type)
    await message.reply_text(reply)


async def classify_attachment(context: ContextTypes.DEFAULT_TYPE, file_id: str, filename: str,
                              content_type: str) -> str:
    """Download into memory, classify over HTTP, and return the reply text. Nothing is kept."""
    settings = services(context)
    try:
        telegram_file = await context.bot.get_file(file_id)
        image = bytes(await telegram_file.download_as_bytearray())
    except TelegramError as error:
        log.warning("could not download an attachment: %s", error)
        return replies.TRY_AGAIN_LATER
    if len(image) > FUNCTION_MAX_BYTES:
        return replies.too_big_to_analyse(FUNCTION_MAX_BYTES)
    try:
        result = await classify(settings.function_url, image, filename=filename,
                                content_type=content_type, timeout=settings.function_timeout_s)
    except FunctionError as error:
        return {
            "timeout": replies.TOO_SLOW,
            "unreadable": replies.UNREADABLE_IMAGE,
            "too_large": replies.too_big_to_analyse(FUNCTION_MAX_BYTES),
        }.get(error.kind, replies.TRY_AGAIN_LATER)
    return replies.format_result(result)


@contextlib.asynccontextmanager
async def chat_action(bot: Bot, chat_id: int, action: str = ChatAction.TYPING) -> AsyncIterator[None]:
    """Show "typing…" while we work, refreshed until the reply is ready.

    The first action is awaited so it always precedes the reply; a failure to
    show it must never cost the user their answer.
    """

    async def show() -> None:
        with contextlib.suppress(TelegramError):
            await bot.send_chat_action(chat_id, action)

    async def keep_showing() -> None:
        while True:
            await asyncio.sleep(CHAT_ACTION_REFRESH_S)
            await show()

    await show()
    refresher = asyncio.create_task(keep_showing())
    try:
        yield
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure (never the update's content) and apologise if there is someone to tell."""
    log.error("error while handling an update: %r", context.error, exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat:
        with contextlib.suppress(TelegramError):
            await context.bot.send_message(update.effective_chat.id, replies.TRY_AGAIN_LATER)
