"""Every word the bot says, and how a function result becomes one chat message.

Kept apart from the handlers so the wording can be reviewed (and tested) as
plain functions: health software lives or dies by what it tells people, and
every answer here ends by pointing at a doctor rather than away from one.

The bot speaks its user's language (Telegram's ``language_code``, base language; English when
unsupported): the texts below are English gettext message ids (:mod:`skinscan.i18n`), and every
function takes the user's :class:`~skinscan.i18n.Translator`. The function's own texts (advice,
condition names, disclaimer) come back in that language because the bot asks for it.
"""

from __future__ import annotations

from skinscan.contract import Level, RetakeReason
from skinscan.i18n import ENGLISH, N_, Translator
from skinscan_client import DISCLAIMER as DISCLAIMER  # the contract's; re-exported for the bot's callers
from skinscan_client import Result, checklist_effect, percent
from skinscan_client.questions import ANSWER_LABELS, QUESTIONS, SOURCE

PHOTO_TIPS = N_(
    "For a good photo:\n"
    "• a close-up with the spot in the middle\n"
    "• daylight or a bright lamp, no flash glare, no filters\n"
    "• hold still so it is sharp (tap the spot on screen to focus)\n"
    "• send it as a photo, or as a file (JPEG or PNG) for full quality"
)

# {tips}: PHOTO_TIPS; {source}: the checklist's source (skinscan_client.questions.SOURCE).
HELP_TEMPLATE = N_(
    "Send me a photo of a skin spot and I will tell you the four conditions it looks most like, "
    "and what to do next.\n\n"
    "This is not a diagnosis. I can be wrong, and only a doctor can examine your skin. If a spot "
    "is new, changing, bleeding, itchy or worries you, see a doctor, whatever I say.\n\n"
    "{tips}\n\n"
    "After each photo I can ask you 7 quick questions about the spot (has it changed in size, is its "
    "shape or colour uneven, is it 7 mm or larger, inflamed, oozing, itchy or sore). "
    "{source} Tap Yes, No or Not sure; Skip leaves a question out.\n\n"
    "/privacy: what happens to your photos\n"
    "/help: show this again"
)
GREETING = N_("Hi, I'm skinscan.")


def help_text(tr: Translator = ENGLISH) -> str:
    return tr.gettext(HELP_TEMPLATE).format(tips=tr.gettext(PHOTO_TIPS), source=tr.gettext(SOURCE))


def start_text(tr: Translator = ENGLISH) -> str:
    return tr.gettext(GREETING) + "\n\n" + help_text(tr)


def say(message: str, tr: Translator = ENGLISH) -> str:
    """One of the fixed messages below, in ``tr``'s language."""
    return tr.gettext(message)


HELP = help_text()
START = start_text()

PRIVACY = N_(
    "Your photos are analysed and then discarded. skinscan never stores or logs them and keeps "
    "no history of your results: each photo goes to the classifier, which answers and forgets it.\n\n"
    "Telegram itself keeps the messages of this chat; you can delete them at any time."
)

SEND_A_PHOTO = N_(
    "I can only look at photos. Send me a photo of the skin spot (or an image file, JPEG or PNG). "
    "/help has tips for a good photo."
)

NOT_AN_IMAGE_FILE = N_(
    "That file is not an image I can look at. Send a photo of the skin spot, or an image file "
    "(JPEG or PNG)."
)

UNREADABLE_IMAGE = N_(
    "I could not read that image. Please send it again as a photo, or as a JPEG or PNG file."
)

TRY_AGAIN_LATER = N_(
    "Sorry, I cannot analyse photos right now. Please try again later.\n\n"
    "If the spot worries you, do not wait for me: see a doctor."
)

TOO_SLOW = N_(
    "Sorry, the analysis took too long. Please try again later.\n\n"
    "If the spot worries you, do not wait for me: see a doctor."
)

HEADLINES: dict[Level, str] = {  # a glanceable first line; the function's message below it gives the detail
    "urgent": N_("What to do: see a doctor soon."),
    "soon": N_("What to do: book a doctor's appointment."),
    "routine": N_("What to do: no rush, but get it checked if it does not settle."),
    "monitor": N_("What to do: keep an eye on it."),
}

RETAKE_TIPS: dict[RetakeReason, str] = {
    "too_small": N_("Move closer, or send the photo as a file so it keeps its full resolution."),
    "too_dark": N_("Use daylight or a bright lamp."),
    "too_bright": N_("Avoid the flash and direct sun glare."),
    "too_blurry": N_("Hold the phone steady and tap the spot on screen to focus."),
    "not_skin": N_("Photograph the skin spot itself, close up, filling the middle of the picture."),
}


LOOKS_MOST_LIKE = N_("This photo looks most like:")
TIP = N_("Tip: {tip}")


def megabytes(size: int) -> str:
    """The number of MB (the unit is in each message, so a language can write it its own way)."""
    return f"{size / (1024 * 1024):.0f}"


def too_big_for_telegram(size: int, limit: int, tr: Translator = ENGLISH) -> str:
    return tr.gettext(
        "That file is {size} MB; Telegram only lets bots download files up to {limit} MB. Please send it "
        "as a photo instead (Telegram compresses it), or as a smaller file."
    ).format(size=megabytes(size), limit=megabytes(limit))


def too_big_to_analyse(limit: int, tr: Translator = ENGLISH) -> str:
    return tr.gettext(
        "That file is over the {limit} MB I can analyse. Please send it as a photo instead "
        "(Telegram compresses it), or as a smaller JPEG."
    ).format(limit=megabytes(limit))


def rate_limited(limit: int, retry_after: float, tr: Translator = ENGLISH) -> str:
    seconds = max(1, round(retry_after))
    return tr.ngettext(
        "You have sent {limit} photo in the last minute. Please wait {seconds} s before sending "
        "another one; this keeps the service available for everyone.",
        "You have sent {limit} photos in the last minute. Please wait {seconds} s before sending "
        "another one; this keeps the service available for everyone.",
        limit,
    ).format(limit=limit, seconds=seconds)


def format_result(result: Result, tr: Translator = ENGLISH) -> str:
    """One chat message for a classify result: conditions, advice, disclaimer."""
    if not result.recognised:
        return format_retake(result, tr)
    lines = [tr.gettext(LOOKS_MOST_LIKE)]
    lines += [f"{rank}. {p.display_name}: {percent(p.probability, tr)}"
              for rank, p in enumerate(result.predictions, 1)]
    lines += ["", tr.gettext(HEADLINES[result.recommendation.level]), result.recommendation.message]
    top = result.top_condition
    if top is not None:
        lines += ["", f"{top.display_name}: {top.description}"]
    lines += ["", result.disclaimer]
    return "\n".join(lines)


def format_retake(result: Result, tr: Translator = ENGLISH) -> str:
    """The photo was not usable: say why, how to take a better one, and the disclaimer."""
    recommendation = result.recommendation
    lines = [recommendation.message]
    tip = RETAKE_TIPS.get(recommendation.reason) if recommendation.reason else None
    if tip:
        lines += ["", tr.gettext(TIP).format(tip=tr.gettext(tip))]
    lines += ["", result.disclaimer]
    return "\n".join(lines)


# -- the checklist questions (the wording is skinscan_client's; the rule is the function's) ----------
OFFER_BUTTON = N_("Answer 7 quick questions")
SKIP_BUTTON = N_("Skip")
DONE_BUTTON = N_("Done: show advice")
BUTTON_LABELS = ANSWER_LABELS  # yes/no/unsure -> "Yes"/"No"/"Not sure"

STALE_BUTTON = N_(
    "That button belongs to a photo I can no longer see. Please send the photo again, and I will "
    "ask the questions for it."
)
STALE_POPUP = N_("This photo is no longer available: please send it again.")
NO_ANSWERS = N_(
    "You skipped every question, so the advice for this photo stays as it was.\n\n"
    "If the spot worries you, see a doctor."
)


def question(index: int, tr: Translator = ENGLISH) -> str:
    """Question ``index`` (0-based) as a chat message."""
    return tr.gettext("Question {number} of {total} about the spot in this photo:\n{question}").format(
        number=index + 1, total=len(QUESTIONS), question=tr.gettext(QUESTIONS[index][1]))


def answers_summary(answers: dict[str, str], tr: Translator = ENGLISH) -> str:
    """What the person answered, once the questions are over (the question message becomes this)."""
    lines = [tr.gettext("Your answers:")]
    for field, text in QUESTIONS:
        value = answers.get(field)
        answer = tr.gettext(BUTTON_LABELS[value]) if value else tr.gettext("skipped")
        lines.append(f"• {tr.gettext(text)} {answer}")
    return "\n".join(lines)


def format_combined(result: Result, tr: Translator = ENGLISH) -> str:
    """The advice for the photo and the answers together: what the answers did, then the result."""
    effect = checklist_effect(result, tr)
    body = format_result(result, tr)
    return f"{effect}\n\n{body}" if effect else body
