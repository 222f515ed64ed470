"""The bot's conversation: commands, photos, image files, and a polite answer to everything else.

The handlers are the same for polling and for the webhook; what they need
(the function URL, timeouts, the per-chat rate limiter) lives in one
:class:`Services` object in ``bot_data``, so a webhook container can keep its
rate limiter across updates while building nothing else twice.

Images are held in memory only for the time of one request to the classify
function and are never written anywhere or logged.

The checklist questions (after a photo's answer) keep no state in the process,
so the stateless webhook runs them as well as polling does. Every message with
buttons is sent as a reply to the person's photo: a button press brings that
message back, and with it ``reply_to_message``, the photo, whose ``file_id``
(far too long for the 64 bytes of ``callback_data``) is downloaded again for
the final call. The answers so far travel in ``callback_data`` itself:
``cl:`` + one letter per question asked (``y``/``n``/``u``, ``s`` skipped),
plus ``!`` for "done now" -- at most 11 bytes. The function applies the rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import (Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler,
                          filters)

from skinscan_client import MAX_UPLOAD_BYTES as FUNCTION_MAX_BYTES
from skinscan_client import FunctionClient, FunctionError, Result
from skinscan_client.questions import ANSWER_VALUES, FIELDS

from skinscan.i18n import Translator, for_language_code

from . import replies

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
    auth: httpx.Auth | None = None  # for the function calls (e.g. SigV4), or None
    transport: httpx.AsyncBaseTransport | None = None  # tests: a fake network (httpx.MockTransport)
    # What the deployment the bot talks to takes (BotSettings.max_upload_bytes): checked before a
    # download and told to people, so a photo is never sent only to be refused.
    max_upload_bytes: int = FUNCTION_MAX_BYTES

    @property
    def client(self) -> FunctionClient:
        return FunctionClient(self.function_url, timeout=self.function_timeout_s, auth=self.auth,
                              async_transport=self.transport)


# -- the checklist's buttons: all their state is in callback_data and the photo they reply to ---------
CALLBACK = re.compile(r"cl:([ynus]{0,%d})(!?)" % len(FIELDS))
LETTER = {"yes": "y", "no": "n", "unsure": "u"}
VALUE = {letter: value for value, letter in LETTER.items()}


def language_of(update: object) -> Translator:
    """The words for whoever sent this update: their Telegram ``language_code``'s base language.

    Read afresh from every update (a message, a button press), so the webhook stays stateless and a
    person who changes Telegram's language gets the new one at once. English when unsupported.
    """
    user = update.effective_user if isinstance(update, Update) else None
    return for_language_code(user.language_code if user else None)


def offer_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(tr.gettext(replies.OFFER_BUTTON), callback_data="cl:")]])


def question_keyboard(state: str, tr: Translator) -> InlineKeyboardMarkup:
    """Buttons for the next question after ``state`` (the answers so far); the data is language-free."""
    answers = [InlineKeyboardButton(tr.gettext(replies.BUTTON_LABELS[value]),
                                    callback_data=f"cl:{state}{LETTER[value]}")
               for value in ANSWER_VALUES]
    return InlineKeyboardMarkup([answers, [
        InlineKeyboardButton(tr.gettext(replies.SKIP_BUTTON), callback_data=f"cl:{state}s"),
        InlineKeyboardButton(tr.gettext(replies.DONE_BUTTON), callback_data=f"cl:{state}!")]])


def answers_of(state: str) -> dict[str, str]:
    """``"yns"`` -> ``{"changed_size": "yes", "irregular_shape": "no"}`` (skipped: not sent)."""
    return {FIELDS[i]: VALUE[letter] for i, letter in enumerate(state) if letter in VALUE}


def attachment_of(message: object) -> tuple[str, int | None, str, str] | None:
    """(file_id, size, filename, content_type) of a photo or image-file message, else None."""
    if not isinstance(message, Message):
        return None
    if message.photo:
        largest = message.photo[-1]
        return largest.file_id, largest.file_size, "photo.jpg", "image/jpeg"
    document = message.document
    if document and (document.mime_type or "").startswith("image/"):
        return (document.file_id, document.file_size, document.file_name or "image",
                document.mime_type or "image/*")
    return None


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    found: Services = context.bot_data[SERVICES]
    return found


def message_of(update: Update) -> Message:
    """The message a message handler's filter matched (PTB types it optional: not every update has one)."""
    if update.effective_message is None:
        raise ValueError("a message handler ran for an update without a message")
    return update.effective_message


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
    application.add_handler(CallbackQueryHandler(on_checklist, pattern=CALLBACK.pattern))
    application.add_handler(CallbackQueryHandler(on_unknown_button))  # old versions' buttons, anything else
    application.add_error_handler(on_error)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await message_of(update).reply_text(replies.start_text(language_of(update)))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await message_of(update).reply_text(replies.help_text(language_of(update)))


async def privacy(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await message_of(update).reply_text(replies.say(replies.PRIVACY, language_of(update)))


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Telegram sends several sizes of a photo; the last one is the largest."""
    message = message_of(update)
    largest = message.photo[-1]
    await analyse(message, context, largest.file_id, largest.file_size,
                  filename="photo.jpg", content_type="image/jpeg", tr=language_of(update))


async def on_image_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An image sent as a file keeps its full quality, which helps the model."""
    message = message_of(update)
    document = message.document
    if document is None:  # the filter matched an image document; nothing else gets here
        return
    await analyse(message, context, document.file_id, document.file_size,
                  filename=document.file_name or "image", content_type=document.mime_type or "image/*",
                  tr=language_of(update))


async def on_other_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await message_of(update).reply_text(replies.say(replies.NOT_AN_IMAGE_FILE, language_of(update)))


async def on_anything_else(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Text, stickers, videos, voice, unknown commands: never silence, always the way forward."""
    await message_of(update).reply_text(replies.say(replies.SEND_A_PHOTO, language_of(update)))


async def analyse(message: Message, context: ContextTypes.DEFAULT_TYPE, file_id: str,
                  file_size: int | None, *, filename: str, content_type: str, tr: Translator) -> None:
    """Size checks, rate limit, download, classify, one reply. Cheap refusals come first."""
    if file_size and file_size > TELEGRAM_DOWNLOAD_LIMIT:
        await message.reply_text(replies.too_big_for_telegram(file_size, TELEGRAM_DOWNLOAD_LIMIT, tr))
        return
    limit = services(context).max_upload_bytes
    if file_size and file_size > limit:
        await message.reply_text(replies.too_big_to_analyse(limit, tr))
        return
    limiter = services(context).rate_limiter
    retry_after = limiter.acquire(message.chat_id)
    if retry_after is not None:
        log.info("rate limited a chat for %.0f s", retry_after)
        await message.reply_text(replies.rate_limited(limiter.limit, retry_after, tr))
        return

    async with chat_action(context.bot, message.chat_id):
        reply, result = await classify_attachment(context, file_id, filename, content_type, tr=tr)
    # A reply to the photo, so the question buttons below it can find the photo again.
    await message.reply_text(reply, do_quote=result is not None,
                             reply_markup=offer_keyboard(tr) if result is not None else None)


async def classify_attachment(context: ContextTypes.DEFAULT_TYPE, file_id: str, filename: str,
                              content_type: str, answers: dict[str, str] | None = None, *,
                              tr: Translator) -> tuple[str, Result | None]:
    """Download into memory, classify over HTTP (asking for ``tr``'s language): the reply text,
    and the result (None on failure).

    Nothing is kept.
    """
    settings = services(context)
    try:
        telegram_file = await context.bot.get_file(file_id)
        image = bytes(await telegram_file.download_as_bytearray())
    except TelegramError as error:
        log.warning("could not download an attachment: %s", error)
        return replies.say(replies.TRY_AGAIN_LATER, tr), None
    if len(image) > settings.max_upload_bytes:
        return replies.too_big_to_analyse(settings.max_upload_bytes, tr), None
    try:
        result = await settings.client.aclassify(image, filename=filename, content_type=content_type,
                                                 answers=answers, language=tr.language)
    except FunctionError as error:
        return {
            "timeout": replies.say(replies.TOO_SLOW, tr),
            "unreadable": replies.say(replies.UNREADABLE_IMAGE, tr),
            "too_large": replies.too_big_to_analyse(settings.max_upload_bytes, tr),
        }.get(error.kind, replies.say(replies.TRY_AGAIN_LATER, tr)), None
    return (replies.format_combined(result, tr) if answers else replies.format_result(result, tr)), result


async def on_checklist(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One button press of the questions: ask the next one, or send the combined advice."""
    query = update.callback_query
    if query is None:  # the handler is registered for callback queries only
        return
    match = CALLBACK.fullmatch(query.data or "")
    message = query.message if isinstance(query.message, Message) else None
    photo = message.reply_to_message if message else None
    attachment = attachment_of(photo)
    if match is None or attachment is None or photo is None:
        await stale_button(update, context)
        return
    state, done = match.group(1), bool(match.group(2))
    tr = language_of(update)
    if not state and not done:  # "Answer 7 quick questions" under a result: start
        await query.answer()
        with contextlib.suppress(TelegramError):  # the offer is used; a second flow would confuse
            await query.edit_message_reply_markup(reply_markup=None)
        await photo.reply_text(replies.question(0, tr), do_quote=True, reply_markup=question_keyboard("", tr))
        return
    if len(state) < len(FIELDS) and not done:
        await query.answer()
        await query.edit_message_text(replies.question(len(state), tr), reply_markup=question_keyboard(state, tr))
        return
    answers = answers_of(state)
    await query.answer()
    with contextlib.suppress(TelegramError):  # the questions become the record of the answers
        await query.edit_message_text(replies.answers_summary(answers, tr), reply_markup=None)
    if not answers:
        await photo.reply_text(replies.say(replies.NO_ANSWERS, tr), do_quote=True)
        return
    limiter = services(context).rate_limiter
    retry_after = limiter.acquire(photo.chat_id)
    if retry_after is not None:
        await photo.reply_text(replies.rate_limited(limiter.limit, retry_after, tr))
        return
    file_id, file_size, filename, content_type = attachment
    async with chat_action(context.bot, photo.chat_id):
        reply, _ = await classify_attachment(context, file_id, filename, content_type, answers, tr=tr)
    await photo.reply_text(reply, do_quote=True)


async def on_unknown_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await stale_button(update, context)


async def stale_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button whose photo is gone (deleted, too old) or that this version does not know: say so."""
    log.info("a button without its photo was pressed")
    tr = language_of(update)
    if update.callback_query is not None:
        with contextlib.suppress(TelegramError):
            await update.callback_query.answer(replies.say(replies.STALE_POPUP, tr))
    if update.effective_chat:
        await context.bot.send_message(update.effective_chat.id, replies.say(replies.STALE_BUTTON, tr))


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
            await context.bot.send_message(update.effective_chat.id,
                                           replies.say(replies.TRY_AGAIN_LATER, language_of(update)))
