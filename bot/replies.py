"""Every word the bot says, and how a function result becomes one chat message.

Kept apart from the handlers so the wording can be reviewed (and tested) as
plain functions: health software lives or dies by what it tells people, and
every answer here ends by pointing at a doctor rather than away from one.
"""

from __future__ import annotations

from skinscan.contract import Level, RetakeReason
from skinscan_client import DISCLAIMER as DISCLAIMER  # the contract's; re-exported for the bot's callers
from skinscan_client import Result, checklist_effect, percent
from skinscan_client.questions import ANSWER_LABELS, QUESTIONS, SOURCE

PHOTO_TIPS = (
    "For a good photo:\n"
    "• a close-up with the spot in the middle\n"
    "• daylight or a bright lamp, no flash glare, no filters\n"
    "• hold still so it is sharp (tap the spot on screen to focus)\n"
    "• send it as a photo, or as a file (JPEG or PNG) for full quality"
)

HELP = (
    "Send me a photo of a skin spot and I will tell you the four conditions it looks most like, "
    "and what to do next.\n\n"
    "This is not a diagnosis. I can be wrong, and only a doctor can examine your skin. If a spot "
    "is new, changing, bleeding, itchy or worries you, see a doctor, whatever I say.\n\n"
    f"{PHOTO_TIPS}\n\n"
    "After each photo I can ask you 7 quick questions about the spot (has it changed in size, is its "
    "shape or colour uneven, is it 7 mm or larger, inflamed, oozing, itchy or sore). "
    f"{SOURCE} Tap Yes, No or Not sure; Skip leaves a question out.\n\n"
    "/privacy: what happens to your photos\n"
    "/help: show this again"
)

START = "Hi, I'm skinscan.\n\n" + HELP

PRIVACY = (
    "Your photos are analysed and then discarded. skinscan never stores or logs them and keeps "
    "no history of your results: each photo goes to the classifier, which answers and forgets it.\n\n"
    "Telegram itself keeps the messages of this chat; you can delete them at any time."
)

SEND_A_PHOTO = (
    "I can only look at photos. Send me a photo of the skin spot (or an image file, JPEG or PNG). "
    "/help has tips for a good photo."
)

NOT_AN_IMAGE_FILE = (
    "That file is not an image I can look at. Send a photo of the skin spot, or an image file "
    "(JPEG or PNG)."
)

UNREADABLE_IMAGE = (
    "I could not read that image. Please send it again as a photo, or as a JPEG or PNG file."
)

TRY_AGAIN_LATER = (
    "Sorry, I cannot analyse photos right now. Please try again later.\n\n"
    "If the spot worries you, do not wait for me: see a doctor."
)

TOO_SLOW = (
    "Sorry, the analysis took too long. Please try again later.\n\n"
    "If the spot worries you, do not wait for me: see a doctor."
)

HEADLINES: dict[Level, str] = {  # a glanceable first line; the function's message below it gives the detail
    "urgent": "What to do: see a doctor soon.",
    "soon": "What to do: book a doctor's appointment.",
    "routine": "What to do: no rush, but get it checked if it does not settle.",
    "monitor": "What to do: keep an eye on it.",
}

RETAKE_TIPS: dict[RetakeReason, str] = {
    "too_small": "Move closer, or send the photo as a file so it keeps its full resolution.",
    "too_dark": "Use daylight or a bright lamp.",
    "too_bright": "Avoid the flash and direct sun glare.",
    "too_blurry": "Hold the phone steady and tap the spot on screen to focus.",
    "not_skin": "Photograph the skin spot itself, close up, filling the middle of the picture.",
}


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


def too_big_for_telegram(size: int, limit: int) -> str:
    return (
        f"That file is {megabytes(size)}; Telegram only lets bots download files up to "
        f"{megabytes(limit)}. Please send it as a photo instead (Telegram compresses it), "
        "or as a smaller file."
    )


def too_big_to_analyse(limit: int) -> str:
    return (
        f"That file is over the {megabytes(limit)} I can analyse. Please send it as a photo instead "
        "(Telegram compresses it), or as a smaller JPEG."
    )


def rate_limited(limit: int, retry_after: float) -> str:
    seconds = max(1, round(retry_after))
    return (
        f"You have sent {limit} photos in the last minute. Please wait {seconds} s before sending "
        "another one; this keeps the service available for everyone."
    )


def format_result(result: Result) -> str:
    """One chat message for a classify result: conditions, advice, disclaimer."""
    if not result.recognised:
        return format_retake(result)
    lines = ["This photo looks most like:"]
    lines += [f"{rank}. {p.label}: {percent(p.probability)}" for rank, p in enumerate(result.predictions, 1)]
    lines += ["", HEADLINES[result.recommendation.level], result.recommendation.message]
    top = result.top_condition
    if top is not None:
        lines += ["", f"{top.label}: {top.description}"]
    lines += ["", result.disclaimer]
    return "\n".join(lines)


def format_retake(result: Result) -> str:
    """The photo was not usable: say why, how to take a better one, and the disclaimer."""
    recommendation = result.recommendation
    lines = [recommendation.message]
    tip = RETAKE_TIPS.get(recommendation.reason) if recommendation.reason else None
    if tip:
        lines += ["", f"Tip: {tip}"]
    lines += ["", result.disclaimer]
    return "\n".join(lines)


# -- the checklist questions (the wording is skinscan_client's; the rule is the function's) ----------
OFFER_BUTTON = "Answer 7 quick questions"
SKIP_BUTTON = "Skip"
DONE_BUTTON = "Done: show advice"
BUTTON_LABELS = ANSWER_LABELS  # yes/no/unsure -> "Yes"/"No"/"Not sure"

STALE_BUTTON = (
    "That button belongs to a photo I can no longer see. Please send the photo again, and I will "
    "ask the questions for it."
)
STALE_POPUP = "This photo is no longer available: please send it again."
NO_ANSWERS = (
    "You skipped every question, so the advice for this photo stays as it was.\n\n"
    "If the spot worries you, see a doctor."
)


def question(index: int) -> str:
    """Question ``index`` (0-based) as a chat message."""
    return (f"Question {index + 1} of {len(QUESTIONS)} about the spot in this photo:\n"
            f"{QUESTIONS[index][1]}")


def answers_summary(answers: dict[str, str]) -> str:
    """What the person answered, once the questions are over (the question message becomes this)."""
    lines = ["Your answers:"]
    for field, text in QUESTIONS:
        value = answers.get(field)
        lines.append(f"• {text} {BUTTON_LABELS[value] if value else 'skipped'}")
    return "\n".join(lines)


def format_combined(result: Result) -> str:
    """The advice for the photo and the answers together: what the answers did, then the result."""
    effect = checklist_effect(result)
    body = format_result(result)
    return f"{effect}\n\n{body}" if effect else body
