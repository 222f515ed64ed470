"""The upload page, served locally, with a server-side fallback for browsers without JavaScript.

The page itself is static (``web/static``: index.html, app.js, style.css,
config.js) and calls the classify function straight from the browser, so the
same files can be hosted in a bucket. This Flask app adds what a static host
cannot:

* ``GET /config.js`` is generated from the function URL it was given;
* ``POST /`` accepts the plain form upload, forwards the photo to the function
  (with the checklist answers, :mod:`skinscan_client`) and renders the answer
  with the same template the page is built from (``templates/page.html``).

Uploads are kept in memory only and never logged or stored. All triage logic
stays in the function (the checklist rule included); this module only turns
its answer into words. It does not import the serving core.

Languages: the page is rendered in ``?lang=`` (the language select, remembered only in the URL),
else the request's ``Accept-Language``, else English; the function is asked for the same
language. The page embeds its words in every language so that its script can follow
``navigator.languages`` or the select without a round trip (and on a static host).
"""

from __future__ import annotations

import functools
import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from skinscan.contract import MAX_UPLOAD_MB, Level, code_for_status, status_codes
from skinscan.i18n import ENGLISH, LANGUAGE_NAMES, LANGUAGES, N_, Translator, negotiate, translator
from skinscan_client import (ANSWER_VALUES, DEFAULT_TIMEOUT_S, MAX_UPLOAD_BYTES, FunctionClient, FunctionError,
                             Result, checklist_effect, percent)
from skinscan_client.questions import ANSWER_LABELS, EFFECTS, QUESTIONS, RAISED_TO, SOURCE, SOURCE_SHORT

from .texts import PAGE

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
DEFAULT_FUNCTION_URL = "http://127.0.0.1:8080/"
FUNCTION_TIMEOUT_S = DEFAULT_TIMEOUT_S

# Plain-words headings for the function's triage levels (the level itself is the function's call).
LEVEL_HEADINGS: dict[Level, str] = {
    "urgent": N_("See a doctor soon, ideally within 2 weeks"),
    "soon": N_("Book a doctor's appointment in the next few weeks"),
    "routine": N_("Not urgent: see a doctor or pharmacist if it does not settle"),
    "monitor": N_("Keep an eye on it"),
    "retake": N_("Please take a new photo"),
}
DEFAULT_HEADING = N_("Our suggestion")

RETAKE_TIPS = (
    N_("Get close: the spot should fill most of the photo."),
    N_("Keep it in focus: hold the phone still and tap the spot on the screen to focus."),
    N_("Use good, even light, such as daylight near a window; avoid flash glare and shadows."),
    N_("Put the spot in the centre of the photo, with a little normal skin around it."),
)

# Friendly words for the function's error codes and for what can go wrong on the way ({max_mb}: the limit).
ERROR_TEMPLATES = {
    "too_large": N_("This photo is larger than {max_mb} MB. Please choose a smaller photo, or take a new "
                    "one with your camera."),
    "not_an_image": N_("This file does not look like a photo we can read. Please choose a JPEG or PNG "
                       "photo of the skin spot."),
    "corrupt_image": N_("This photo could not be opened; the file may be damaged. Please try another photo."),
    "image_too_large": N_("This image is far larger than a normal photo. Please choose a regular photo."),
    "empty_image": N_("Please choose a photo of the skin spot first."),
    "missing_image": N_("Please choose a photo of the skin spot first."),
    "too_many_images": N_("Please send one photo at a time."),
    "model_unavailable": N_("The analysis service is unavailable right now. Please try again in a few "
                            "minutes."),
    "unavailable": N_("The analysis service is unavailable right now. Please try again in a few minutes."),
    "network": N_("We could not reach the analysis service. Please check your internet connection and "
                  "try again."),
    "timeout": N_("The analysis took too long to answer. Please try again in a few minutes."),
    "not_configured": N_("This page is not connected to an analysis service yet. Please try again later."),
    "unexpected": N_("Something went wrong while analysing your photo. Please try again later."),
    "not_found": N_("There is nothing at this address. You can check a photo on this page."),
    "bad_answer": N_("One of the answers to the questions could not be read. Please choose Yes, No or Not sure, "
                     "and try again."),
}
ERROR_ALIASES = {"unsupported_media_type": "not_an_image", "bad_request": "unexpected", "rejected": "unexpected"}
ERROR_FOOTER = N_("If you are worried about a skin spot, see a doctor; you do not need this tool for that.")


def error_messages(tr: Translator = ENGLISH) -> dict[str, str]:
    """:data:`ERROR_TEMPLATES` in ``tr``'s language, the upload limit filled in."""
    return {key: tr.gettext(text).format(max_mb=MAX_UPLOAD_MB) for key, text in ERROR_TEMPLATES.items()}


ERROR_MESSAGES = error_messages()  # English


def error_code(code: str | None, status: int | None = None) -> str:
    """The message key for a function error code (or, lacking one, its HTTP status).

    The status rule is the contract's :func:`~skinscan.contract.code_for_status`; the page's script
    gets the same table (``statusCodes`` in :func:`page_texts`), so the two cannot drift.
    """
    for candidate in (code or "", code_for_status(status) if status else ""):
        candidate = ERROR_ALIASES.get(candidate, candidate)
        if candidate in ERROR_TEMPLATES:
            return candidate
    return "unexpected"


def checklist_view(result: Result, tr: Translator = ENGLISH) -> dict[str, Any] | None:
    """What the answers did, for the result block: the effect, and the photo's own suggestion."""
    effect = checklist_effect(result, tr)
    if effect is None:
        return None
    photo_level = result.recommendation.photo_level
    raised = result.recommendation.raised_by == "checklist" and photo_level is not None
    return {"effect": effect, "raised": raised,
            "photo": tr.gettext(LEVEL_HEADINGS[photo_level]) if raised and photo_level else ""}


def result_view(result: Result, filename: str = "", tr: Translator = ENGLISH) -> dict[str, Any]:
    """What the template shows for a function answer (already checked by the client's parser).

    The function's texts come in the language it was asked for; the page's own words are ``tr``'s.
    """
    recommendation = result.recommendation
    predictions = [{"label": p.display_name, "probability": p.probability, "percent": percent(p.probability, tr)}
                   for p in result.predictions] if result.status == "ok" else []
    top = result.top_condition
    return {
        "status": result.status,
        "level": recommendation.level,
        "heading": tr.gettext(LEVEL_HEADINGS[recommendation.level]),
        "message": recommendation.message,
        "retake": not result.recognised,
        "predictions": predictions,
        "top": {"label": top.display_name, "description": top.description} if top else None,
        "checklist": checklist_view(result, tr),
        "disclaimer": result.disclaimer,
        "model": f"{result.model.name} {result.model.version}".strip(),
        "filename": filename,
    }


# An empty result with every part present: the browser script clones it and removes what it needs not.
SKELETON_VIEW = {"status": "", "level": "unknown", "heading": "", "message": "", "retake": True,
                 "predictions": [{"label": "", "probability": 0, "percent": ""}],
                 "top": {"label": "", "description": ""}, "disclaimer": "", "model": " ", "filename": " ",
                 "checklist": {"effect": "", "raised": True, "photo": ""}}


def page_words(tr: Translator = ENGLISH) -> dict[str, str]:
    """Every fixed word of the page in ``tr``'s language, by the key its element carries (``data-i18n``)."""
    words = {key: tr.gettext(text).format(max_mb=MAX_UPLOAD_MB) for key, text in PAGE.items()}
    words.update({f"tip_{i}": tr.gettext(tip) for i, tip in enumerate(RETAKE_TIPS)})
    words.update({f"q_{field}": tr.gettext(question) for field, question in QUESTIONS})
    words.update({f"answer_{value}": tr.gettext(label) for value, label in ANSWER_LABELS.items()})
    words.update(checklist_source=tr.gettext(SOURCE), checklist_source_short=tr.gettext(SOURCE_SHORT),
                 error_footer=tr.gettext(ERROR_FOOTER))
    return words


def script_words(tr: Translator) -> dict[str, Any]:
    """What the browser script says in one language: the page's words and the result's."""
    return {"page": page_words(tr), "levels": {level: tr.gettext(text) for level, text in LEVEL_HEADINGS.items()},
            "defaultHeading": tr.gettext(DEFAULT_HEADING), "errors": error_messages(tr),
            "effects": {key: tr.gettext(text) for key, text in EFFECTS.items()},
            "raisedTo": {level: tr.gettext(text) for level, text in RAISED_TO.items()},
            "percent": tr.percent_pattern()}


@functools.cache
def page_texts() -> dict[str, Any]:
    """The display words the browser script needs (every language), embedded as a JSON data block.

    The same for every language the page is rendered in: the script reads ``<html lang>``.
    """
    return {"languages": list(LANGUAGES), "words": {code: script_words(translator(code)) for code in LANGUAGES},
            "errorAliases": ERROR_ALIASES, "statusCodes": status_codes(), "maxBytes": MAX_UPLOAD_BYTES,
            "timeoutMs": int(FUNCTION_TIMEOUT_S * 1000),
            "answerFields": [field for field, _ in QUESTIONS], "answerValues": list(ANSWER_VALUES)}


def page_language(query_lang: object, form_lang: object, accept_language: str | None) -> Translator:
    """The language a page request is answered in: the URL's ``lang`` (the select), the form's
    hidden ``lang`` (the no-JavaScript upload keeps the page's language), else ``Accept-Language``."""
    for chosen in (query_lang, form_lang):
        if isinstance(chosen, str) and chosen in LANGUAGES:
            return translator(chosen)
    return translator(negotiate(accept_language))


def origin_of(url: str) -> str:
    """``https://host:port`` of an absolute URL, for the CSP; ``'self'`` for a relative one."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return "'self'"


def content_security_policy(connect_src: str) -> str:
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        f"connect-src {connect_src}",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ])


# The static copy of the page cannot send headers; a meta policy covers what it can.
STATIC_CSP = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob:",
    "connect-src https: http://localhost:* http://127.0.0.1:*", "form-action 'none'", "base-uri 'none'",
])


def form_answers(form: Any) -> dict[str, str]:
    """The checklist answers of the no-JavaScript form: the radio groups that were answered.

    Values are passed on as sent; the function checks them (a bad one is its ``bad_answer``).
    """
    return {field: str(form.get(field)) for field, _ in QUESTIONS if form.get(field)}


class InMemoryRequest(flask.Request):
    """Keep uploaded files in memory: Werkzeug would spool large ones to a temporary file on disk."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def create_app(function_url: str | None = None, auth: Any = None) -> flask.Flask:
    """The page's Flask app, calling the classify function at ``function_url``.

    Without an argument the URL comes from ``SKINSCAN_FUNCTION_URL`` (default: the local stack's
    ``http://127.0.0.1:8080/``). ``auth``: an ``httpx.Auth`` for the calls (e.g. SigV4 signing).
    """
    app = flask.Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="")
    app.request_class = InMemoryRequest
    url = function_url or os.environ.get("SKINSCAN_FUNCTION_URL") or DEFAULT_FUNCTION_URL
    app.config["SKINSCAN_FUNCTION_URL"] = url
    client = FunctionClient(url, timeout=FUNCTION_TIMEOUT_S, auth=auth)
    # Room for the multipart envelope around a photo at the limit; the photo itself is checked below.
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + 256 * 1024
    csp = content_security_policy(origin_of(url))

    def language() -> Translator:
        request = flask.request
        form_lang = request.form.get("lang") if request.method == "POST" and request.mimetype else None
        return page_language(request.args.get("lang"), form_lang, request.headers.get("Accept-Language"))

    def page(status: int = 200, result: dict[str, Any] | None = None, error: str | None = None,
             tr: Translator | None = None) -> flask.Response:
        if tr is None:
            try:
                tr = language()
            except Exception:  # e.g. a body too large to read its lang field: the header still says
                tr = page_language(flask.request.args.get("lang"), None, flask.request.headers.get("Accept-Language"))
        html = render_page(result=result, error=error, tr=tr)
        return flask.Response(html, status=status, mimetype="text/html",
                              headers={"Content-Language": tr.language, "Vary": "Accept-Language"})

    @app.get("/")
    def index():
        return page()

    @app.post("/")
    def upload():
        try:
            uploads = [f for f in flask.request.files.getlist("image") if f and f.filename]
        except RequestEntityTooLarge:
            return page(413, error="too_large")
        if not uploads:
            return page(400, error="missing_image")
        upload = uploads[0]
        data = upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            return page(413, error="too_large")
        if not data:
            return page(400, error="empty_image")
        tr = language()
        try:
            answer = client.classify(data, filename="photo", content_type=upload.mimetype,
                                     answers=form_answers(flask.request.form), language=tr.language)
        except FunctionError as failure:
            return page(failure.status, error=error_code(failure.code, failure.status), tr=tr)
        return page(result=result_view(answer, filename=upload.filename or "", tr=tr), tr=tr)

    @app.get("/config.js")
    def config_js():
        body = f"window.SKINSCAN_CONFIG = {json.dumps({'functionUrl': url})};\n"
        return flask.Response(body, mimetype="text/javascript", headers={"Cache-Control": "no-store"})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 413:
            return page(413, error="too_large")
        return page(error.code or 500, error="not_found" if error.code in (404, 405) else "unexpected")

    @app.errorhandler(Exception)
    def unexpected(_error: Exception):  # a bug still gets a friendly page, never a stack trace
        app.logger.error("unexpected error in the upload page: %s", type(_error).__name__)
        return page(500, error="unexpected")

    @app.after_request
    def security_headers(response: flask.Response) -> flask.Response:
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    return app


_environment = None


def render_page(result: dict[str, Any] | None = None, error: str | None = None,
                static_site: bool = False, tr: Translator = ENGLISH) -> str:
    """The page in ``tr``'s language, optionally with a server-rendered result or error. Autoescaped Jinja."""
    global _environment
    if _environment is None:
        import jinja2

        _environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                          autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                          keep_trailing_newline=True)
    template = _environment.get_template("page.html")
    words = page_words(tr)
    return template.render(
        result=result, skeleton=SKELETON_VIEW, error=error_messages(tr)[error] if error else None,
        static_site=static_site, static_csp=STATIC_CSP, t=words, lang=tr.language,
        languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        tips=[words[f"tip_{i}"] for i in range(len(RETAKE_TIPS))],
        questions=[(field, words[f"q_{field}"]) for field, _ in QUESTIONS],
        answer_labels={value: words[f"answer_{value}"] for value in ANSWER_LABELS},
        texts=page_texts(),
    )


def write_static_index(path: Path = STATIC_DIR / "index.html") -> Path:
    """Regenerate ``web/static/index.html`` (the static-host copy of the page) from the template."""
    path.write_text(render_page(static_site=True), encoding="utf-8")
    return path
