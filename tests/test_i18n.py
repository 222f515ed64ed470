"""Languages: negotiation, the catalogs' completeness and placeholders, numbers per locale, glossary.

English is the source and the fallback; es, pt, fr, de and ru each have a catalog in
shared/skinscan/locales that must translate every message of the extracted template, keep every
placeholder, and give every plural form its language needs.
"""

from __future__ import annotations

import re
import string

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from conftest import REPO
from skinscan import i18n
from skinscan.i18n import LANGUAGES, base_language, negotiate, parse_accept_language, translator

TRANSLATED = [language for language in LANGUAGES if language != "en"]
TEMPLATE = i18n.LOCALES_DIR / "skinscan.pot"
GLOSSARY = REPO / "docs" / "glossary.md"


def read_catalog(path):
    with path.open("rb") as file:
        return read_po(file)


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a str.format template (``{{`` is a literal brace)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# -- negotiation --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("header", "language"), [
    ("es", "es"),
    ("es-MX,es;q=0.9,en;q=0.8", "es"),
    ("de-CH, fr;q=0.8, *;q=0.1", "de"),
    ("fr;q=0.3, pt-BR;q=0.9", "pt"),                 # weights, not order, decide
    ("ja, ru;q=0.5", "ru"),                           # the first supported one
    ("ja, zh-CN;q=0.9", "en"),                        # nothing supported: English
    ("", "en"), (None, "en"),
    ("*", "en"),
    ("en;q=0, *", "es"),                              # refused English, anything else welcome
    ("de;q=0, de-AT", "de"),                          # a narrower range may still ask for it
    ("es;q=abc, pt", "pt"),                           # a malformed weight drops that range only
    ("es;q=0", "en"),                                 # q=0 means "not acceptable"
    ("RU", "ru"), ("pt_BR", "pt"),
    ("<script>, es", "es"),                           # garbage ranges are skipped, never an error
])
def test_accept_language_picks_the_most_wanted_supported_language(header, language):
    assert negotiate(header) == language


def test_ranges_come_out_most_wanted_first_and_ties_keep_their_order():
    assert parse_accept_language("de-CH, fr;q=0.8, en;q=0.8, *;q=0.1, es;q=0") == [
        ("de-ch", 1.0), ("fr", 0.8), ("en", 0.8), ("*", 0.1)]


def test_a_huge_header_is_cut_not_refused():
    header = ", ".join(["xx"] * 5000) + ", es"
    assert negotiate(header) == "en"  # es is past the cut; answering English is the safe default


@pytest.mark.parametrize(("code", "language"), [("de", "de"), ("pt-br", "pt"), ("ES", "es"), ("uk", None),
                                                ("", None), (None, None), (42, None)])
def test_a_telegram_language_code_maps_to_its_base_language(code, language):
    assert base_language(code) == language


def test_unsupported_languages_read_english_and_say_so():
    assert translator("xx").language == "en" and translator(None).language == "en"
    assert translator("xx").gettext("Melanoma") == "Melanoma"


# -- the catalogs -------------------------------------------------------------------------------------
def extracted_messages() -> set[object]:
    """What `make translations` (`pybabel extract -F babel.cfg -k N_plural:1,2`) finds in the sources now."""
    with (REPO / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {**DEFAULT_KEYWORDS, "N_plural": (1, 2)}
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
            str(REPO), method_map, options_map, keywords=keywords,
            directory_filter=lambda d: ".venv" not in d and "node_modules" not in d):
        found.add(message)
    return found


def test_the_template_holds_every_text_marked_in_the_sources():
    """A marked text missing from skinscan.pot would stay English everywhere: run `make translations`."""
    template = {m.id for m in read_catalog(TEMPLATE) if m.id}
    found = extracted_messages()
    assert found - template == set(), "run `make translations` and translate the new entries"
    assert template - found == set(), "the template lists texts the sources no longer use"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_catalog_translates_every_message_with_the_same_placeholders(language):
    template = {m.id for m in read_catalog(TEMPLATE) if m.id}
    catalog = read_catalog(i18n.catalog_path(language))
    assert {m.id for m in catalog if m.id} == template
    nplurals = get_plural(language).num_plurals
    problems = []
    for message in catalog:
        if not message.id:
            continue
        name = (message.id[0] if message.pluralizable else message.id)[:60]
        if message.fuzzy:
            problems.append(f"fuzzy: {name}")
        forms = list(message.string) if message.pluralizable else [message.string]
        if message.pluralizable and len(forms) != nplurals:
            problems.append(f"{len(forms)} plural forms, {language} needs {nplurals}: {name}")
        wanted = placeholders(message.id[1] if message.pluralizable else message.id)
        for form in forms:
            if not form or not form.strip():
                problems.append(f"untranslated: {name}")
            elif placeholders(form) != wanted:
                problems.append(f"placeholders {sorted(placeholders(form))} != {sorted(wanted)}: {name}")
            elif form.startswith(" ") != (message.id[0] if message.pluralizable else message.id).startswith(" "):
                problems.append(f"leading space differs (texts are joined): {name}")
    assert problems == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_plural_forms_follow_the_language(language):
    tr = translator(language)
    assert tr.language == language
    forms = {tr.ngettext("{score} point", "{score} points", n) for n in (1, 3, 5)}  # not in a catalog:
    assert forms <= {"{score} point", "{score} points"}                            # English, as gettext does
    sent = "You have sent {limit} photo in the last minute. Please wait {seconds} s before sending another one; " \
           "this keeps the service available for everyone."
    plural = sent.replace("{limit} photo ", "{limit} photos ")
    assert tr.ngettext(sent, plural, 1) != sent and tr.ngettext(sent, plural, 5) != plural


def test_russian_points_take_their_three_forms():
    tr = translator("ru")
    singular = ("Please see a doctor or dermatologist soon, ideally within 2 weeks. Your answers raised this from "
                "the photo's suggestion because it {because} ({score} point on the NICE weighted 7-point checklist; "
                "3 or more means it should be checked promptly).")
    plural = singular.replace("{score} point on", "{score} points on")
    said = {n: tr.ngettext(singular, plural, n).format(because="…", score=n) for n in (3, 5, 21)}
    assert "3 балла" in said[3] and "5 баллов" in said[5] and "21 балл " in said[21]


# -- numbers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("language", "expected"), [("en", "41%"), ("es", "41\xa0%"), ("pt", "41%"),
                                                    ("fr", "41\xa0%"), ("de", "41\xa0%"), ("ru", "41\xa0%")])
def test_percentages_are_written_as_each_language_writes_them(language, expected):
    assert translator(language).percent(0.412) == expected


def test_percent_rounds_halves_up_and_never_shows_a_misleading_zero():
    de = translator("de")
    assert de.percent(0.125) == "13\xa0%" and de.percent(0.001) == "<1\xa0%" and de.percent(0) == "0\xa0%"
    assert de.percent(float("nan")) == "" and de.percent("x") == "" and de.percent(1.7) == "100\xa0%"


def test_lists_are_joined_in_each_language():
    assert translator("es").join(["a", "b", "c"]) == "a, b y c"
    assert translator("ru").join(["a", "b"]) == "a и b"
    assert translator("en").join(["a"]) == "a"


# -- medical wording: the glossary is what the catalogs say ---------------------------------------------
def glossary_rows() -> list[list[str]]:
    """The glossary's condition table: English label, then es, pt, fr, de, ru."""
    text = GLOSSARY.read_text(encoding="utf-8")
    section = text.split("## The nine conditions", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    return [row for row in rows[2:] if row]  # past the header and its rule


def test_the_glossary_names_each_condition_as_the_catalogs_do():
    from skinscan.labels import LABELS

    rows = glossary_rows()
    assert [row[0].strip("`") for row in rows] == list(LABELS)
    for row in rows:
        label = row[0].strip("`")
        for language, term in zip(TRANSLATED, row[1:], strict=True):
            assert translator(language).gettext(label) == term, (language, label)


def test_the_glossary_says_the_translations_are_not_yet_reviewed_by_clinicians():
    assert re.search(r"not (yet )?been reviewed by clinicians", GLOSSARY.read_text(encoding="utf-8"))
