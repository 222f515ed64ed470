"""Record a real conversation with the bot in one language, as a Markdown transcript for docs/.

    PYTHONPATH=shared:tests .venv/bin/python tests/record_bot_conversation.py PHOTO.jpg de docs/bot-conversation-de.md

The real classify function (serving the shipped model) runs on loopback; the bot runs through its
stateless webhook, a freshly started processor for every update (a cold Lambda each time), against
the Telegram Bot API emulator, as a user whose Telegram app is set to the given language. The
photo itself is never written anywhere; only the chat's text is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bot.app import BotSettings
from bot.webhook import WebhookProcessor, handle_webhook
from conftest import classify_app, serving
from skinscan.i18n import LANGUAGE_NAMES, translator
from telegram_emulator import TelegramEmulator

CHAT = 31337
SECRET = "recording-secret_0123456789abcdef"  # the webhook refuses fewer than 32 characters


def record(photo: bytes, language: str) -> list[str]:
    tr = translator(language)
    with TelegramEmulator() as emulator, serving(classify_app()) as function_url:
        settings = BotSettings(token=emulator.token, function_url=function_url, api_base_url=emulator.url)

        def deliver(update: dict) -> None:
            processor = WebhookProcessor(settings, SECRET)
            try:
                status, _ = handle_webhook({"X-Telegram-Bot-Api-Secret-Token": SECRET},
                                           json.dumps(update).encode(), processor)
                assert status == 200
            finally:
                processor.close()

        emulator.set_language(CHAT, language)
        deliver(emulator.send_text(CHAT, "/start"))
        deliver(emulator.send_photo(CHAT, photo))
        deliver(emulator.press(CHAT, tr.gettext("Answer 7 quick questions")))
        for answer in ("No", "Yes", "Not sure", "No", "No", "No", "Yes"):
            deliver(emulator.press(CHAT, tr.gettext(answer)))
        deliver(emulator.send_text(CHAT, "/privacy"))
        return list(emulator.transcript)


def main(argv: list[str]) -> int:
    photo_path, language, out = Path(argv[0]), argv[1], Path(argv[2])
    transcript = record(photo_path.read_bytes(), language)
    out.write_text(
        f"# A conversation with the bot in `{language}` ({LANGUAGE_NAMES[language]})\n\n"
        f"Recorded with `tests/record_bot_conversation.py`: the real classify function serving the shipped\n"
        f"model, the bot's stateless webhook (a fresh processor for every update), and the Telegram Bot API\n"
        f"emulator, as a user whose Telegram app is set to `{language}`. The photo is a dermoscopic image\n"
        f"from the test data (not in this repository). Buttons are shown in brackets under a message.\n"
        f"The translations have not yet been reviewed by clinicians.\n\n"
        "```text\n" + "\n".join(transcript) + "\n```\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
