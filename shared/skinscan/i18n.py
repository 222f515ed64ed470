"""Which language a person reads, and the words in it: gettext catalogs, negotiation, numbers.

Every user-facing text in skinscan is an English message id marked with :func:`N_` (or passed to
a :class:`Translator`), extracted by ``pybabel extract`` into ``locales/skinscan.pot``; each
language's translations live in ``locales/<lang>/LC_MESSAGES/skinscan.po`` (reviewed text in
the repository). The ``.po`` files are compiled in memory the first time a language is asked
for (Babel's reader and writer, the same code as ``pybabel compile``), so there is no build step
to forget and no ``.mo`` that can go stale.

English is the source and the fallback: an unknown or unsupported language, a message that is
not translated (or is marked fuzzy), or a process without Babel (the core installed with no
extra) all read English, and :attr:`Translator.language` then says ``en`` -- the
``Content-Language`` an answer carries is always the language it is really in.

Standard library only at import (Babel is imported when a catalog or a number is first needed),
so the core, the client, the page and the bot can all use it.
"""

from __future__ import annotations

import functools
import gettext as _gettext
import io
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("skinscan.i18n")

SOURCE_LANGUAGE = "en"
# Base languages only (``es``, not ``es-MX``): one catalog per language, reviewed as a whole.
LANGUAGES: tuple[str, ...] = ("en", "es", "pt", "fr", "de", "ru")
# Each language's own name, for a language picker (not translated: people look for their own).
LANGUAGE_NAMES: dict[str, str] = {"en": "English", "es": "Español", "pt": "Português", "fr": "Français",
                                  "de": "Deutsch", "ru": "Русский"}
DOMAIN = "skinscan"
LOCALES_DIR = Path(__file__).resolve().parent / "locales"

# An Accept-Language header longer than this, or with more ranges, is cut (never an error).
MAX_HEADER_CHARS = 1024
MAX_RANGES = 32
_RANGE = re.compile(r"^(\*|[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*)$")
_QUALITY = re.compile(r"^[qQ]\s*=\s*(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


def N_(message: str) -> str:
    """Mark ``message`` for extraction without translating it (it is translated where it is shown)."""
    return message


def N_plural(singular: str, plural: str) -> tuple[str, str]:
    """Mark a counted message (both forms) for extraction; translate it with :meth:`Translator.ngettext`.

    ``pybabel extract`` needs ``-k N_plural:1,2`` to see it (``make translations`` passes it).
    """
    return singular, plural


def base_language(tag: object) -> str | None:
    """``"pt-BR"`` -> ``"pt"`` when Portuguese is supported; ``None`` for anything unsupported."""
    if not isinstance(tag, str):
        return None
    base = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else None


def _ranges(header: str | None) -> list[tuple[str, float, int]]:
    """``(range, weight, position)`` for every well-formed range, weight 0 included."""
    ranges: list[tuple[str, float, int]] = []
    for position, part in enumerate((header or "")[:MAX_HEADER_CHARS].split(",")[:MAX_RANGES]):
        tag, *params = [piece.strip() for piece in part.split(";")]
        if not _RANGE.match(tag):
            continue
        weights = [_QUALITY.match(param) for param in params if param[:1] in ("q", "Q")]
        if any(match is None for match in weights):
            continue  # a malformed weight: ignore this range rather than guess
        quality = float(weights[-1].group(1)) if weights else 1.0  # type: ignore[union-attr]
        ranges.append((tag.lower().replace("_", "-"), quality, position))
    return ranges


def parse_accept_language(header: str | None) -> list[tuple[str, float]]:
    """The language ranges of an ``Accept-Language`` header, most wanted first (RFC 9110 12.5.4).

    Ranges with ``q=0`` (not acceptable) and malformed parts are dropped; equal weights keep
    the header's order. ``"de-CH, fr;q=0.8, *;q=0.1"`` -> ``[("de-ch", 1.0), ("fr", 0.8), ("*", 0.1)]``.
    """
    wanted = sorted((r for r in _ranges(header) if r[1] > 0), key=lambda r: (-r[1], r[2]))
    return [(tag, quality) for tag, quality, _ in wanted]


def negotiate(accept_language: str | None, supported: Sequence[str] = LANGUAGES,
              default: str = SOURCE_LANGUAGE) -> str:
    """The supported language an ``Accept-Language`` header asks for most, else ``default``.

    A range matches its base language (``es-MX`` -> ``es``); ``*`` accepts any language, so it
    gives the default unless the header refused that one (``en;q=0``).
    """
    refused = {tag for tag, quality, _ in _ranges(accept_language) if quality == 0}
    for tag, _quality in parse_accept_language(accept_language):
        if tag == "*":
            return next((language for language in (default, *supported) if language not in refused), default)
        base = tag.split("-", 1)[0]
        if tag in supported:
            return tag
        if base in supported:
            return base
    return default


def catalog_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def _compile(language: str) -> _gettext.NullTranslations | None:
    """The language's ``.po`` compiled in memory (fuzzy entries left out), or None if unavailable."""
    try:
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po
    except ImportError:
        log.warning("Babel is not installed: answers are in English (install skinscan with an extra)")
        return None
    try:
        with catalog_path(language).open("rb") as po:
            catalog = read_po(po, locale=language, domain=DOMAIN)
    except OSError:
        log.warning("no catalog for %r: answers are in English", language)
        return None
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


@dataclass(frozen=True)
class Translator:
    """The words and number formats of one language. Get one with :func:`translator`."""

    language: str
    catalog: _gettext.NullTranslations = field(default_factory=_gettext.NullTranslations, repr=False)

    def gettext(self, message: str) -> str:
        return self.catalog.gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        """The form of a message for ``count`` (Russian has three; the catalog knows its rule)."""
        return self.catalog.ngettext(singular, plural, count)

    def join(self, items: Iterable[str]) -> str:
        """``["a", "b", "c"]`` -> ``"a, b and c"`` in this language's words (Babel's list patterns)."""
        words = list(items)
        try:
            from babel.lists import format_list
        except ImportError:  # English only without Babel
            return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        return format_list(words, locale=self.language)

    def percent(self, probability: object) -> str:
        """``0.412`` -> ``"41%"`` (``"41 %"`` in German...): whole percent, halves round up.

        A tiny non-zero value reads ``"<1%"`` rather than a misleading ``"0%"``; not a number -> ``""``.
        The page's script fills :meth:`percent_pattern` the same way (tests pin both).
        """
        try:
            value = float(probability)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return ""
        if not math.isfinite(value):
            return ""
        if 0 < value < 0.005:
            return "<" + self.percent_pattern().replace("{n}", "1")
        whole = math.floor(min(max(value, 0.0), 1.0) * 100 + 0.5)
        return self.percent_pattern().replace("{n}", str(whole))

    def percent_pattern(self) -> str:
        """How a whole percentage is written here, ``{n}`` standing for the number: ``"{n}\\xa0%"``."""
        return _percent_pattern(self.language)


@functools.cache
def _percent_pattern(language: str) -> str:
    try:
        from decimal import Decimal

        from babel.numbers import format_percent
    except ImportError:
        return "{n}%"
    return format_percent(Decimal("0.42"), locale=language).replace("42", "{n}")


ENGLISH = Translator(SOURCE_LANGUAGE)


@functools.cache
def translator(language: str | None) -> Translator:
    """The translator for a supported language (loaded once per process); English otherwise."""
    if language not in LANGUAGES or language == SOURCE_LANGUAGE:
        return ENGLISH
    catalog = _compile(language)
    return ENGLISH if catalog is None else Translator(language, catalog)


def for_accept_language(header: str | None) -> Translator:
    """The translator an HTTP request's ``Accept-Language`` header asks for."""
    return translator(negotiate(header))


def for_language_code(code: object) -> Translator:
    """The translator for a Telegram ``language_code`` (``"de"``, ``"pt-br"``): its base language."""
    return translator(base_language(code))
