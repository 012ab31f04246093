"""Who owns what across a flows folder: every flow id, keyword and confirmation word."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flows.fields import Fields
from flows.keywords import RESERVED_WORDS, is_opt_out, normalise
from flows.model import Gateway

DEFAULT_CONFIRM_WORDS = ("YES", "Y")

_FLOW_ID = re.compile(r"[a-z0-9-]+")


@dataclass
class Claims:
    """What the folder's flows have taken so far: ids and words must each have one owner."""

    flow_ids: dict[str, str] = field(default_factory=dict)  # id → file
    keywords: dict[str, tuple[str, str]] = field(default_factory=dict)  # word → (id, file)
    confirm_words: dict[str, tuple[str, str]] = field(default_factory=dict)  # word → (id, file)


def claim_flow_id(fields: Fields, claims: Claims) -> str | None:
    """The flow id if it is well formed and not yet taken, else None (and the problem)."""
    flow_id = fields.text("flow", required=True)
    if flow_id is None:
        return None
    if not _FLOW_ID.fullmatch(flow_id):
        fields.problem("flow", f"flow id '{flow_id}' must be lowercase letters, digits and '-'")
    elif flow_id in claims.flow_ids:
        fields.problem(
            "flow", f"duplicate flow id '{flow_id}' (also in {claims.flow_ids[flow_id]})"
        )
    else:
        claims.flow_ids[flow_id] = fields.file
        return flow_id
    return None


def _reserved(text: str, word: str, gateway: Gateway | None, what: str) -> str | None:
    # SPEC §5: opt-out, START and HELP run before any flow, so such a word would never
    # reach the flow, and a marketer must never be able to take them (FCC 24-18).
    if word in RESERVED_WORDS:
        return f"'{text}' is a reserved word (opt-out, START and HELP words can't be {what})"
    if is_opt_out(word, gateway.opt_out_phrases if gateway else ()):
        return f"'{text}' reads as an opt-out, which always wins (FCC 24-18)"
    return None


def claim_keywords(
    fields: Fields,
    match: str | None,
    gateway: Gateway | None,
    claims: Claims,
    owner: tuple[str, str],
) -> tuple[str, ...] | None:
    """The keywords as written; each must be usable and owned by this flow alone."""
    keywords = fields.texts("keywords", required=True)
    for i, keyword in enumerate(keywords or ()):
        path, word = f"keywords[{i}]", normalise(keyword)
        if not word:
            fields.problem(path, f"keyword '{keyword}' is empty without its punctuation")
        elif reserved := _reserved(keyword, word, gateway, "keywords"):
            fields.problem(path, reserved)
        elif match == "first_word" and " " in word:
            fields.problem(path, f"keyword '{keyword}' must be one word when match is first_word")
        elif word in claims.keywords:
            other_id, other_file = claims.keywords[word]
            if other_file == fields.file:
                fields.problem(path, f"keyword '{keyword}' is listed twice")
            else:
                used = f"is already used by flow '{other_id}' ({other_file})"
                fields.problem(path, f"keyword '{keyword}' {used}")
        elif word in claims.confirm_words:
            other_id, other_file = claims.confirm_words[word]
            taken = f"is a confirmation word of flow '{other_id}' ({other_file})"
            fields.problem(path, f"keyword '{keyword}' {taken}")
        else:
            claims.keywords[word] = owner
    return keywords


def claim_confirm_words(
    fields: Fields, gateway: Gateway | None, claims: Claims, owner: tuple[str, str]
) -> tuple[str, ...] | None:
    """The confirmation words, normalised; none may be reserved or a keyword."""
    written = fields.texts("confirm_words", DEFAULT_CONFIRM_WORDS)
    for i, text in enumerate(written or ()):
        path, word = f"confirm_words[{i}]", normalise(text)
        if not word:
            fields.problem(path, f"'{text}' is empty without its punctuation")
        elif reserved := _reserved(text, word, gateway, "confirmation words"):
            fields.problem(path, reserved)
        elif word in claims.keywords:
            # SPEC §5: a flow keyword (rule 6) is matched before a confirmation word (rule 7).
            other_id, other_file = claims.keywords[word]
            fields.problem(path, f"'{text}' is a keyword of flow '{other_id}' ({other_file})")
        else:
            claims.confirm_words.setdefault(word, owner)
    # Stored normalised, the form the engine compares inbound text in.
    return tuple(dict.fromkeys(normalise(t) for t in written)) if written else None
