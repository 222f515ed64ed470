"""A small Telegram Bot API emulator on loopback, for testing the bot through its real HTTP stack.

It implements the methods the bot uses (getMe, getUpdates with long polling,
sendMessage, sendChatAction, getFile, setWebhook, deleteWebhook,
setMyCommands, and for inline buttons editMessageText, editMessageReplyMarkup,
answerCallbackQuery) and the file download path ``/file/bot<token>/<file_path>``,
with Telegram's envelope ``{"ok": ..., "result" | "error_code", "description"}``.
Unknown methods answer 404 like Telegram does, so a new call in the bot
shows up as a failing test rather than passing silently.

Like Telegram, it keeps the chat's messages: a message sent as a reply carries
``reply_to_message`` (one level deep), a button press (``press``) brings the
message its keyboard is attached to, and ``callback_data`` over 64 bytes is
refused (BUTTON_DATA_INVALID). ``delete`` removes a user's message, and with it
the ``reply_to_message`` of the bot's replies to it, as Telegram does.

The "user side" (``send_text``, ``send_photo``, ...) builds real update JSON,
queues it for getUpdates and returns it (for webhook or ``process_update``
tests). Everything the bot does is recorded; ``transcript`` reads like the chat.
"""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

TOKEN = "123456789:TEST-emulator-token_abcdefghijklmnopq"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "skinscan", "username": "skinscan_test_bot",
            "can_join_groups": False, "can_read_all_group_messages": False,
            "supports_inline_queries": False}
DOWNLOAD_LIMIT = 20 * 1024 * 1024
# Parameters that are strings even when they look like JSON ("5" stays "5").
STRING_PARAMS = {"text", "action", "url", "secret_token", "file_id", "parse_mode", "caption",
                 "callback_query_id"}
MAX_CALLBACK_DATA = 64  # bytes, Bot API


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes | None  # None: metadata only (a file too big to store in a test)
    size: int


class TelegramEmulator:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.lock = threading.Condition()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.language_codes: dict[int, str | None] = {}  # chat -> its user's language_code ("en" if unset)
        self.sent_messages: list[dict[str, Any]] = []
        self.chat_actions: list[dict[str, Any]] = []
        self.downloads: list[str] = []
        self.transcript: list[str] = []
        self.webhook: dict[str, Any] | None = None
        self.commands: list[dict[str, Any]] = []
        self.files: dict[str, StoredFile] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat_id, message_id): message
        self.edits: list[dict[str, Any]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="telegram-emulator", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server root, as ``TELEGRAM_API_BASE_URL`` expects it."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> TelegramEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TelegramEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the user's side -----------------------------------------------------------------------
    def set_language(self, chat_id: int, language_code: str | None) -> None:
        """The language of the person in ``chat_id``'s Telegram app (Telegram sends it with each update)."""
        self.language_codes[chat_id] = language_code

    def user(self, chat_id: int) -> dict[str, Any]:
        user: dict[str, Any] = {"id": chat_id, "is_bot": False, "first_name": "Alex"}
        language_code = self.language_codes.get(chat_id, "en")
        if language_code is not None:  # Telegram leaves it out when it does not know
            user["language_code"] = language_code
        return user

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        user = self.user(chat_id)
        update_id = next(self._ids)
        message = {"message_id": update_id, "date": int(time.time()), "from": user,
                   "chat": {"id": chat_id, "type": "private", "first_name": "Alex"}, **content}
        update = {"update_id": update_id, "message": message}
        with self.lock:
            self.messages[(chat_id, update_id)] = message
            self._pending.append(update)
            self.lock.notify_all()
        return update

    def _store(self, data: bytes | None, size: int, extension: str) -> StoredFile:
        n = next(self._ids)
        stored = StoredFile(f"FILE-{n}", f"U{n}", f"documents/file_{n}.{extension}", data, size)
        self.files[stored.file_id] = stored
        return stored

    def send_text(self, chat_id: int, text: str) -> dict[str, Any]:
        self._log(f"user: {text}")
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._message(chat_id, **content)

    def send_photo(self, chat_id: int, jpeg: bytes) -> dict[str, Any]:
        """Like Telegram: a small thumbnail and the full photo, the largest last."""
        image = Image.open(io.BytesIO(jpeg))
        thumbnail = image.copy()
        thumbnail.thumbnail((40, 40))
        buffer = io.BytesIO()
        thumbnail.convert("RGB").save(buffer, "JPEG")
        sizes = []
        for picture, data in ((thumbnail, buffer.getvalue()), (image, jpeg)):
            stored = self._store(data, len(data), "jpg")
            sizes.append({"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                          "width": picture.width, "height": picture.height, "file_size": len(data)})
        self._log(f"user: [photo {image.width}x{image.height}, {len(jpeg) / 1024:.1f} KB]")
        return self._message(chat_id, photo=sizes)

    def send_document(self, chat_id: int, data: bytes | None, file_name: str, mime_type: str,
                      file_size: int | None = None) -> dict[str, Any]:
        size = len(data) if data is not None else int(file_size or 0)
        stored = self._store(data, size, file_name.rsplit(".", 1)[-1])
        self._log(f"user: [file {file_name}, {mime_type}, {size / 1024:.1f} KB]")
        return self._message(chat_id, document={
            "file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
            "file_name": file_name, "mime_type": mime_type, "file_size": size})

    def send_sticker(self, chat_id: int) -> dict[str, Any]:
        stored = self._store(b"RIFF-webp", 9, "webp")
        self._log("user: [sticker]")
        return self._message(chat_id, sticker={
            "file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "🙂"})

    def press(self, chat_id: int, label: str, message_id: int | None = None) -> dict[str, Any]:
        """Tap the button ``label`` on the bot's latest message that has it (or on ``message_id``)."""
        with self.lock:
            candidates = [m for (chat, _), m in self.messages.items() if chat == chat_id
                          and m.get("from", {}).get("is_bot") and (message_id is None or m["message_id"] == message_id)]
            for message in reversed(candidates):
                for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
                    for button in row:
                        if button["text"] == label:
                            return self.press_data(chat_id, message["message_id"], button["callback_data"],
                                                   label)
        raise LookupError(f"no button {label!r} in chat {chat_id}")

    def press_data(self, chat_id: int, message_id: int, data: str, label: str | None = None) -> dict[str, Any]:
        """A callback query as Telegram sends it; an unknown message comes as an inaccessible one."""
        user = self.user(chat_id)
        update_id = next(self._ids)
        with self.lock:
            message = self.messages.get((chat_id, message_id))
            message = json.loads(json.dumps(message)) if message else {
                "chat": {"id": chat_id, "type": "private"}, "message_id": message_id, "date": 0}
            self.transcript.append(f"user: [taps “{label or data}”]")
            update = {"update_id": update_id, "callback_query": {
                "id": f"cq-{update_id}", "from": user, "chat_instance": f"ci-{chat_id}", "data": data,
                "message": message}}
            self._pending.append(update)
            self.lock.notify_all()
        return update

    def delete(self, chat_id: int, message_id: int) -> None:
        """The user deletes a message: replies to it lose their ``reply_to_message``."""
        with self.lock:
            self.messages.pop((chat_id, message_id), None)
            for message in self.messages.values():
                if (message.get("reply_to_message") or {}).get("message_id") == message_id:
                    del message["reply_to_message"]
            self.transcript.append("user: [deletes the photo]")

    # -- what the bot did ----------------------------------------------------------------------
    def texts(self, chat_id: int | None = None) -> list[str]:
        with self.lock:
            return [m["text"] for m in self.sent_messages if chat_id is None or m["chat_id"] == chat_id]

    def methods(self) -> list[str]:
        with self.lock:
            return [method for method, _ in self.requests]

    def wait_for_messages(self, count: int, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.sent_messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the bot sent {len(self.sent_messages)} of {count} messages")
                self.lock.wait(left)
            return [m["text"] for m in self.sent_messages]

    def wait_for_method(self, method: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while method not in [m for m, _ in self.requests]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the bot never called {method}")
                self.lock.wait(left)

    def _log(self, line: str) -> None:
        with self.lock:
            self.transcript.append(line)

    # -- the Bot API ---------------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append((method, params))
            self.lock.notify_all()
        handler = getattr(self, f"api_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        return handler(params)

    @staticmethod
    def ok(result: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": result}

    @staticmethod
    def bad_request(description: str) -> tuple[int, dict[str, Any]]:
        return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"}

    def api_getMe(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.ok(BOT_USER)

    def api_getUpdates(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.webhook:
            return 409, {"ok": False, "error_code": 409,
                         "description": "Conflict: can't use getUpdates method while webhook is active"}
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 1.0)  # short, for tests
        with self.lock:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
            while not self._pending and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())
            return self.ok(list(self._pending))

    @staticmethod
    def _keyboard_problem(markup: Any) -> str | None:
        for row in (markup or {}).get("inline_keyboard", []) if isinstance(markup, dict) else []:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                    return "BUTTON_DATA_INVALID"
        return None

    @staticmethod
    def _buttons_line(markup: Any) -> str:
        rows = (markup or {}).get("inline_keyboard", []) if isinstance(markup, dict) else []
        return " / ".join(" ".join(f"[{b['text']}]" for b in row) for row in rows)

    def _show(self, prefix: str, text: str, markup: Any) -> None:
        line = prefix + text.replace("\n", "\n     ")
        buttons = self._buttons_line(markup)
        self.transcript.append(line + (f"\n     {buttons}" if buttons else ""))

    def api_sendMessage(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = params.get("text")
        if not text:
            return self.bad_request("message text is empty")
        if len(text) > 4096:
            return self.bad_request("message is too long")
        markup = params.get("reply_markup")
        problem = self._keyboard_problem(markup)
        if problem:
            return self.bad_request(problem)
        chat_id = int(params["chat_id"])
        reply = params.get("reply_parameters") or {}
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        reply_to = reply_to or params.get("reply_to_message_id")
        message = {"message_id": next(self._ids), "date": int(time.time()), "from": BOT_USER,
                   "chat": {"id": chat_id, "type": "private"}, "text": text}
        with self.lock:
            if isinstance(markup, dict) and markup.get("inline_keyboard"):
                message["reply_markup"] = markup
            if reply_to is not None:
                original = self.messages.get((chat_id, int(reply_to)))
                if original is None:
                    return self.bad_request("message to be replied not found")
                message["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
            self.messages[(chat_id, message["message_id"])] = message
            self.sent_messages.append({"chat_id": chat_id, "text": text, "params": params,
                                       "message_id": message["message_id"]})
            self._show("bot: ", text, markup)
            self.lock.notify_all()
        return self.ok(message)

    def _edit(self, params: dict[str, Any], text: str | None) -> tuple[int, dict[str, Any]]:
        markup = params.get("reply_markup")
        problem = self._keyboard_problem(markup)
        if problem:
            return self.bad_request(problem)
        key = (int(params["chat_id"]), int(params["message_id"]))
        with self.lock:
            message = self.messages.get(key)
            if message is None:
                return self.bad_request("message to edit not found")
            if text is not None:
                message["text"] = text
            if isinstance(markup, dict) and markup.get("inline_keyboard"):
                message["reply_markup"] = markup
            else:
                message.pop("reply_markup", None)
            self.edits.append({"chat_id": key[0], "message_id": key[1], "text": message["text"],
                               "reply_markup": message.get("reply_markup")})
            if text is not None:
                self._show("bot (edits its message): ", text, markup)
            self.lock.notify_all()
            return self.ok(message)

    def api_editMessageText(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not params.get("text"):
            return self.bad_request("message text is empty")
        return self._edit(params, params["text"])

    def api_editMessageReplyMarkup(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._edit(params, None)

    def api_answerCallbackQuery(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.callback_answers.append(params)
            if params.get("text"):
                self.transcript.append(f"bot: [notice: {params['text']}]")
        return self.ok(True)

    def api_sendChatAction(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.chat_actions.append(params)
            self.transcript.append(f"bot: [{params['action']}…]")
        return self.ok(True)

    def api_getFile(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        stored = self.files.get(params.get("file_id", ""))
        if stored is None:
            return self.bad_request("invalid file_id")
        if stored.size > DOWNLOAD_LIMIT:
            return self.bad_request("file is too big")
        return self.ok({"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                        "file_size": stored.size, "file_path": stored.file_path})

    def api_setWebhook(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.webhook = params
        return self.ok(True)

    def api_deleteWebhook(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.webhook = None
        return self.ok(True)

    def api_setMyCommands(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.commands = params.get("commands") or []
        return self.ok(True)

    def download(self, file_path: str) -> bytes | None:
        stored = next((f for f in self.files.values() if f.file_path == file_path), None)
        if stored is None or stored.data is None:
            return None
        with self.lock:
            self.downloads.append(stored.file_id)
        return stored.data

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like api.telegram.org

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.route()

            def do_POST(self) -> None:
                self.route()

            def route(self) -> None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)  # PTB quotes ":"
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                file_prefix = f"/file/bot{emulator.token}/"
                if path.startswith(file_prefix):
                    data = emulator.download(path[len(file_prefix):])
                    if data is None:
                        return self.reply(404, b"Not Found", "text/plain")
                    return self.reply(200, data, "application/octet-stream")
                prefix, _, method = path.rpartition("/")
                if prefix != f"/bot{emulator.token}":
                    return self.json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                self.json(*emulator.call(method, self.params(body)))

            def params(self, body: bytes) -> dict[str, Any]:
                content_type = self.headers.get("Content-Type", "")
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                if content_type.startswith("application/json"):
                    return {**query, **json.loads(body or b"{}")}
                fields = {**query, **dict(urllib.parse.parse_qsl(body.decode()))}
                return {k: v if k in STRING_PARAMS else _json_or_text(v) for k, v in fields.items()}

            def json(self, status: int, payload: dict[str, Any]) -> None:
                self.reply(status, json.dumps(payload).encode(), "application/json")

            def reply(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _json_or_text(value: str) -> Any:
    """PTB sends non-string parameters JSON-encoded in a form body."""
    try:
        return json.loads(value)
    except ValueError:
        return value
