"""Every fixed word of the upload page, by key: the template prints them, the script swaps them.

The page is rendered in one language (the server's choice: ``?lang=`` or ``Accept-Language``),
and its script may switch to another without a round trip (``navigator.languages``, or the
language select), including on a static host where no server renders anything. So each
element with fixed words carries ``data-i18n="<key>"`` and the page embeds these words in every
language (:func:`web.app.page_texts`); the script replaces the text of each marked element.

The English strings are the gettext message ids (``N_`` marks them for ``pybabel extract``); the
translations are in ``skinscan.i18n``'s catalogs. Keys are stable names, never shown.
:func:`web.app.page_words` adds the words the page shares with others (questions, tips).
"""

from __future__ import annotations

from skinscan.i18n import N_

# Fixed words of the page, in page order. {max_mb} is filled with the upload limit.
PAGE: dict[str, str] = {
    "title": N_("skinscan: check a photo of a skin spot"),
    "description": N_("Check a photo of a skin spot: a suggestion of what it resembles and how soon to see a "
                      "doctor. Not a diagnosis."),
    "skip": N_("Skip to the photo upload"),
    "language": N_("Language"),
    "change_language": N_("Change"),
    "heading": N_("Check a photo of a skin spot"),
    "lead": N_("skinscan looks at one photo of a spot, mole or rash, suggests which of nine common skin "
               "conditions it resembles, and tells you whether and how soon to see a doctor."),
    "is_heading": N_("What it is"),
    "is_1": N_("A quick check by a computer model trained on photos of skin conditions."),
    "is_2": N_("Advice in plain words on what to do next. When in doubt, it says “see a doctor”."),
    "is_not_heading": N_("What it is not"),
    "is_not_1": N_("Not a diagnosis and not a replacement for a doctor. It sees one photo and can be wrong."),
    "is_not_2": N_("It cannot rule out skin cancer: a new, changing, bleeding or itchy spot should be seen by "
                   "a doctor, whatever the result."),
    "upload_heading": N_("Your photo"),
    "needs_js": N_("This page needs JavaScript to analyse photos."),
    "dropzone": N_("Take a sharp close-up of the spot in good light, then choose it here."),
    "choose": N_("Choose a photo"),
    "camera": N_("Take a photo"),
    "drop_hint": N_("You can also drag and drop a photo here."),
    "formats": N_("JPEG or PNG, up to {max_mb} MB."),
    "preview_alt": N_("The photo you chose"),
    "questions_summary": N_("Answer 7 quick questions for better advice"),
    "optional": N_("(optional)"),
    "skip_any": N_("Skip any question you cannot answer."),
    "source_label": N_("Source:"),
    "answers_private": N_("Your answers are sent with the photo, used for this one answer and not stored."),
    "analyse": N_("Analyse photo"),
    "analysing_button": N_("Analysing…"),
    "privacy": N_("Your photo is sent only to the skinscan analysis service, used for this one answer and not "
                  "stored. This page sets no cookies and saves nothing on your device."),
    "result_label": N_("Result"),
    "analysing": N_("Analysing your photo…"),
    "analysing_hint": N_("This usually takes a few seconds."),
    "eyebrow": N_("Our suggestion"),
    "photo_alone": N_("The photo alone suggested:"),
    "tips_heading": N_("How to take a better photo"),
    "tips_worried": N_("If you are worried about the spot, see a doctor anyway."),
    "looks_most_like": N_("Looks most like:"),
    "matches_heading": N_("Closest matches"),
    "matches_note": N_("The model's scores for the closest matches. They are estimates from one photo, not the "
                       "chance that you have a condition."),
    "photo_label": N_("Photo:"),
    "model_label": N_("Model:"),
    "your_photo": N_("Your photo"),
    "no_preview": N_("no preview available."),
    "error_heading": N_("We could not analyse the photo"),
    "important": N_("Important:"),
    "footer": N_("skinscan gives suggestions, not diagnoses, and can be wrong. It does not replace a doctor. "
                 "If a spot is new, changing, bleeding, itchy or worries you, see a doctor. In an emergency, "
                 "call your local emergency number."),
}

