"""One flow file (SPEC §6) read into a Flow: its keys, their checks, its default replies."""

from __future__ import annotations

import re
from datetime import timedelta

from flows.claims import Claims, claim_confirm_words, claim_flow_id, claim_keywords
from flows.fields import Fields, kind
from flows.lint import lint_frequency, lint_length, lint_prompt, lint_welcome
from flows.model import Flow, Frequency, Gateway, Problem, Replies
from flows.questions import read_questions
from flows.times import DURATION, parse_duration

FLOW_KEYS = (
    "flow",
    "keywords",
    "match",
    "program",
    "double_opt_in",
    "confirm_words",
    "confirm_within",
    "frequency",
    "replies",
    "questions",
)
REPLY_KEYS = ("prompt", "welcome", "already_subscribed", "expired", "help", "done")
MATCHES = ("only_word", "first_word")

_FREQUENCY = re.compile(r"(\d+)/(day|week|month)")
_WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}


def read_flow(
    doc: dict,
    file: str,
    content_hash: str,
    gateway: Gateway | None,
    claims: Claims,
    problems: list[Problem],
) -> Flow | None:
    """Check one flow file's mapping and build its Flow; None when it has an error."""
    first = len(problems)
    fields = Fields(doc, file, problems, FLOW_KEYS)
    flow_id = claim_flow_id(fields, claims)
    match = fields.text("match", "only_word")
    if match is not None and match not in MATCHES:
        fields.problem("match", f"expected only_word or first_word, got '{match}'")
    owner = (str(doc.get("flow", "")), file)
    keywords = claim_keywords(fields, match, gateway, claims, owner)
    brand = gateway.brand if gateway else ""
    program = fields.text("program", brand)
    double_opt_in = fields.flag("double_opt_in", True)
    confirm_words = claim_confirm_words(fields, gateway, claims, owner)
    confirm_within = _pattern(fields, "confirm_within", "24h", DURATION, _DURATION_EXPECTED)
    frequency = _frequency(fields)
    replies = _replies(fields, program or brand, keywords, double_opt_in, gateway)
    questions = read_questions(fields)
    if frequency and replies:
        # Without double opt-in the welcome is the first message, so it carries the terms.
        reply = "prompt" if double_opt_in else "welcome"
        problems += lint_frequency(file, frequency, getattr(replies, reply), reply)
    if any(p.severity == "error" for p in problems[first:]):
        return None
    return Flow(
        id=flow_id,
        keywords=keywords,
        match=match,
        program=program,
        double_opt_in=double_opt_in,
        confirm_words=confirm_words,
        confirm_within=parse_duration(confirm_within[0]),
        frequency=frequency,
        replies=replies,
        questions=questions,
        file=file,
        content_hash=content_hash,
    )


_DURATION_EXPECTED = "a duration like 24h (a whole number, then m, h or d)"
_FREQUENCY_EXPECTED = "a cap like 4/month (N/day, N/week or N/month)"


def _pattern(
    fields: Fields, key: str, default: str | None, pattern: re.Pattern, expected: str
) -> re.Match | None:
    if key not in fields.doc and default is None:
        return None
    value = fields.doc.get(key, default)
    if not isinstance(value, str):
        fields.problem(key, f"expected {expected}, got {kind(value)}")
        return None
    found = pattern.fullmatch(value)
    if not found:
        fields.problem(key, f"expected {expected}, got '{value}'")
    elif int(found[1]) == 0:
        fields.problem(key, "must be more than 0")
    else:
        return found
    return None


def _frequency(fields: Fields) -> Frequency | None:
    found = _pattern(fields, "frequency", None, _FREQUENCY, _FREQUENCY_EXPECTED)
    if found is None:
        return None
    return Frequency(int(found[1]), found[2], _WINDOWS[found[2]])


def _default_replies(program: str, keyword: str, gateway: Gateway | None) -> dict[str, str]:
    # CTIA: a HELP reply names the program and tells how to opt out and where to get help.
    brand_help = gateway.help if gateway else ""
    return {
        "prompt": "",  # unused without double opt-in
        "already_subscribed": f"You're already subscribed to {program}. "
        "Reply HELP for help, STOP to cancel.",
        "expired": f"{program}: that sign-up request has expired. Text {keyword} to start again.",
        "help": f"{program}: reply STOP to cancel. {brand_help}".strip(),
        "done": "Thanks, you're all set!",
    }


def _replies(
    fields: Fields,
    program: str,
    keywords: tuple[str, ...] | None,
    double_opt_in: bool | None,
    gateway: Gateway | None,
) -> Replies | None:
    doc = fields.mapping("replies", required=True)
    if doc is None:
        return None
    replies = Fields(doc, fields.file, fields.problems, REPLY_KEYS, prefix="replies.")
    defaults = _default_replies(program, keywords[0] if keywords else "", gateway)
    prompt_required = double_opt_in is not False
    texts = {}
    for key in REPLY_KEYS:
        required = key == "welcome" or (key == "prompt" and prompt_required)
        texts[key] = replies.text(key, defaults.get(key), required=required)
    for key, text in texts.items():
        if text:
            fields.problems.extend(
                lint_length(fields.file, f"replies.{key}", text, default=key not in doc)
            )
    # The prompt is linted whenever it can be sent: always with double opt-in.
    if texts["prompt"] and (prompt_required or "prompt" in doc):
        names = tuple(dict.fromkeys(n for n in (program, gateway and gateway.brand) if n))
        fields.problems.extend(lint_prompt(fields.file, texts["prompt"], names))
    if texts["welcome"]:
        fields.problems.extend(lint_welcome(fields.file, texts["welcome"]))
    if None in texts.values():
        return None
    return Replies(**texts)
