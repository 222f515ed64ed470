"""The answer speaks the reader's language: the API (Accept-Language), the bot (language_code), the page.

Machine fields never change with the language; what people read does, English being the fallback.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator

import pytest
from telegram import Update

from bot.app import BotSettings, build_application
from bot.webhook import WebhookProcessor, handle_webhook
from conftest import classify_app, image_bytes
from skinscan.i18n import translator
from skinscan.labels import LABELS
from telegram_emulator import TelegramEmulator
from web.app import create_app

SPANISH_DISCLAIMER = translator("es").gettext(
    "skinscan is not a diagnosis and not a substitute for a doctor. It can be wrong. "
    "If a spot is new, changing, bleeding, itchy or worries you, see a doctor.")
CHAT = 777


@pytest.fixture
def api(fixture_model, use_model):
    use_model(fixture_model)
    return classify_app().test_client()


def post_photo(client, language: str | None, **fields):
    headers = {"Accept-Language": language} if language else {}
    return client.post("/", data={"image": (io.BytesIO(image_bytes(size=(320, 240))), "spot.jpg"), **fields},
                       content_type="multipart/form-data", headers=headers)


# -- the API ------------------------------------------------------------------------------------------
def test_spanish_is_asked_for_and_answered_with_the_identifiers_left_english(api):
    english = post_photo(api, None).get_json()
    response = post_photo(api, "es-MX,es;q=0.9,en;q=0.5")
    body = response.get_json()
    assert response.status_code == 200 and response.headers["Content-Language"] == "es"
    assert "Accept-Language" in response.headers["Vary"]
    assert body["disclaimer"] == SPANISH_DISCLAIMER
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in english["predictions"]]
    assert all(p["label"] in LABELS for p in body["predictions"])
    es = translator("es")
    assert [p["name"] for p in body["predictions"]] == [es.gettext(p["label"]) for p in body["predictions"]]
    assert body["recommendation"]["level"] == english["recommendation"]["level"]
    assert body["recommendation"]["message"] != english["recommendation"]["message"]
    assert body["top_condition"]["name"] == es.gettext(body["top_condition"]["label"])
    assert body["top_condition"]["description"] != english["top_condition"]["description"]


def test_an_unknown_language_gets_english(api):
    response = post_photo(api, "ja, zh-CN;q=0.8")
    assert response.headers["Content-Language"] == "en"
    assert response.get_json()["disclaimer"].startswith("skinscan is not a diagnosis")
    assert all(p["name"] == p["label"] for p in response.get_json()["predictions"])


def test_checklist_advice_is_in_the_language_and_counts_points_its_way(api):
    body = post_photo(api, "ru", changed_size="yes", irregular_colour="yes", oozing="yes").get_json()
    assert body["checklist"]["score"] == 5 and body["checklist"]["yes"] == ["changed_size", "irregular_colour",
                                                                             "oozing"]
    message = body["recommendation"]["message"]
    assert "5 баллов" in message and "изменилось в размере" in message and " и " in message


@pytest.mark.parametrize(("language", "expected"), [("de", "Die hochgeladene Datei ist leer."),
                                                    ("fr", "Le fichier envoyé est vide."),
                                                    ("en", "The upload is empty.")])
def test_error_messages_are_in_the_language_and_codes_are_not(api, language, expected):
    response = api.post("/", data=b"", content_type="image/jpeg", headers={"Accept-Language": language})
    assert response.status_code == 400 and response.headers["Content-Language"] == language
    assert response.get_json()["error"] == {"code": "empty_image", "message": expected}


def test_a_bad_answer_is_explained_in_the_language_naming_the_field(api):
    response = post_photo(api, "pt-BR", changed_size="maybe")
    error = response.get_json()["error"]
    assert error["code"] == "bad_answer" and error["field"] == "changed_size"
    assert error["message"] == "'changed_size' deve ser yes, no ou unsure."


def test_the_info_probe_carries_the_disclaimer_in_the_language(api):
    response = api.get("/", headers={"Accept-Language": "es"})
    assert response.headers["Content-Language"] == "es" and response.get_json()["disclaimer"] == SPANISH_DISCLAIMER


# -- the bot ------------------------------------------------------------------------------------------
@pytest.fixture
def emulator() -> Iterator[TelegramEmulator]:
    with TelegramEmulator() as emulator:
        yield emulator


def converse(app, *updates) -> None:
    async def run() -> None:
        async with app:
            for update in updates:
                await app.process_update(Update.de_json(update, app.bot))

    asyncio.run(run())


def test_a_german_telegram_user_gets_german_replies_and_buttons(emulator, function_server, photo):
    emulator.set_language(CHAT, "de-AT")
    de = translator("de")
    app = build_application(BotSettings(token=emulator.token, function_url=function_server,
                                        api_base_url=emulator.url), with_updater=False)
    converse(app, emulator.send_text(CHAT, "/help"), emulator.send_photo(CHAT, photo))
    converse(app, emulator.press(CHAT, de.gettext("Answer 7 quick questions")))
    texts = emulator.texts()
    assert texts[0].startswith("Senden Sie mir ein Foto einer Hautstelle")
    assert texts[1].startswith("Dieses Foto ähnelt am ehesten:")
    assert texts[1].endswith(de.gettext("skinscan is not a diagnosis and not a substitute for a doctor. It can be "
                                        "wrong. If a spot is new, changing, bleeding, itchy or worries you, see a "
                                        "doctor."))
    assert re.search(r"^1\. .+: (\d{1,3}|<1)\xa0%$", texts[1].splitlines()[1])  # German percent format
    chat = "\n".join(emulator.transcript)  # buttons read "[label]" there
    for button in ("7 kurze Fragen beantworten", "Ja", "Nein", "Weiß nicht", "Überspringen",
                   "Fertig: Empfehlung zeigen"):
        assert f"[{button}]" in chat, button
    assert "Frage 1 von 7" in texts[-1]


def test_an_unsupported_or_missing_language_code_gets_english(emulator, function_server):
    for code in ("uk", None):
        emulator.set_language(CHAT, code)
        app = build_application(BotSettings(token=emulator.token, function_url=function_server,
                                            api_base_url=emulator.url), with_updater=False)
        converse(app, emulator.send_text(CHAT, "/privacy"))
    assert emulator.texts() == [emulator.texts()[0]] * 2
    assert emulator.texts()[0].startswith("Your photos are analysed and then discarded.")


def test_the_stateless_webhook_keeps_each_users_language(emulator, function_server, photo):
    """Two people, two languages, every update through a freshly started webhook: nothing is kept."""
    settings = BotSettings(token=emulator.token, function_url=function_server, api_base_url=emulator.url)
    secret = "s3cret_0123456789abcdef0123456789"  # the webhook refuses fewer than 32 characters

    def cold(update):
        processor = WebhookProcessor(settings, secret)
        try:
            body = json.dumps(update).encode()
            assert handle_webhook({"X-Telegram-Bot-Api-Secret-Token": secret}, body, processor) == (200, b"ok")
        finally:
            processor.close()

    emulator.set_language(CHAT, "fr")
    emulator.set_language(CHAT + 1, "ru")
    cold(emulator.send_text(CHAT, "/privacy"))
    cold(emulator.send_text(CHAT + 1, "/privacy"))
    cold(emulator.send_photo(CHAT, photo))
    cold(emulator.press(CHAT, translator("fr").gettext("Answer 7 quick questions")))
    texts = emulator.texts()
    assert texts[0].startswith("Vos photos sont analysées") and texts[1].startswith("Ваши фото анализируются")
    assert texts[2].startswith("Cette photo ressemble surtout à :") and texts[3].startswith("Question 1 sur 7")


# -- the page -----------------------------------------------------------------------------------------
def test_a_spanish_browser_gets_the_page_in_spanish_from_the_first_screen(function_server):
    client = create_app(function_server).test_client()
    response = client.get("/", headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.8"})
    html = response.get_data(as_text=True)
    assert response.headers["Content-Language"] == "es" and '<html lang="es">' in html
    assert "Revise una foto de una mancha en la piel" in html and "¿Ha crecido o cambiado de tamaño?" in html
    assert '<option value="es" lang="es" selected>Español</option>' in html


def test_the_language_select_in_the_url_wins_over_the_browser(function_server):
    client = create_app(function_server).test_client()
    html = client.get("/?lang=de", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert '<html lang="de">' in html and "Foto einer Hautstelle prüfen" in html
    html = client.get("/?lang=xx", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="fr">' in html  # an unknown choice is ignored, not an error


def test_the_no_javascript_upload_answers_in_the_pages_language_to_the_end(function_server):
    client = create_app(function_server).test_client()
    response = client.post("/", data={"image": (io.BytesIO(image_bytes(size=(320, 240))), "spot.jpg"),
                                      "lang": "es", "changed_size": "yes"},
                           content_type="multipart/form-data", headers={"Accept-Language": "en"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and '<html lang="es">' in html
    region = html[html.index('id="result"'):html.index("<template")]
    assert SPANISH_DISCLAIMER in region.replace("&#39;", "'")
    assert re.search(r'data-slot="percent">(\d{1,3}|&lt;1)\xa0%<', region)  # Spanish percent format
    assert "Sus respuestas" in region


def test_the_page_embeds_every_languages_words_for_its_script(function_server):
    html = create_app(function_server).test_client().get("/").get_data(as_text=True)
    texts = json.loads(re.search(r'<script type="application/json" id="skinscan-texts">(.*?)</script>',
                                 html, re.S).group(1))
    assert texts["languages"] == ["en", "es", "pt", "fr", "de", "ru"]
    keys = set(re.findall(r'data-i18n(?:-lead|-alt|-aria-label|-content)?="([a-z0-9_]+)"', html))
    for language, words in texts["words"].items():
        assert keys <= set(words["page"]), (language, keys - set(words["page"]))
        assert words["percent"].count("{n}") == 1
    assert texts["words"]["de"]["percent"] == "{n}\xa0%" and texts["words"]["en"]["percent"] == "{n}%"
