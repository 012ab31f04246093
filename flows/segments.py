"""How many SMS segments a text costs: GSM-7 when every character fits, else UCS-2."""

from __future__ import annotations

from dataclasses import dataclass

# GSM 03.38 basic character set (one septet each); 0x1B is the escape, not a character.
_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: escape + character, two septets each.
_EXTENSION = frozenset("\f^{}\\[~]|€")

# 3GPP TS 23.040: one segment holds 140 octets; a concatenated one loses 6 to its header.
LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}  # (single, concatenated)


@dataclass(frozen=True)
class Segments:
    """A text's encoding, its length in that encoding's units, and its segment count."""

    encoding: str  # GSM-7 | UCS-2
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    count: int


def non_gsm_characters(text: str) -> str:
    """The characters of `text` that GSM-7 can't carry, in order of first appearance."""
    return "".join(dict.fromkeys(c for c in text if c not in _BASIC and c not in _EXTENSION))


def _costs(text: str, encoding: str) -> list[int]:
    if encoding == "GSM-7":
        return [2 if c in _EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]  # astral characters are surrogate pairs


def segments(text: str) -> Segments:
    """Encode `text` the way carriers do and count the segments it is sent as."""
    encoding = "UCS-2" if non_gsm_characters(text) else "GSM-7"
    costs = _costs(text, encoding)
    units = sum(costs)
    single, concatenated = LIMITS[encoding]
    if units <= single:
        return Segments(encoding, units, 1 if units else 0)
    # An escape pair or a surrogate pair is never split, so a segment may end one unit short.
    count, used = 1, 0
    for cost in costs:
        if used + cost > concatenated:
            count, used = count + 1, 0
        used += cost
    return Segments(encoding, units, count)


def describe(text: str) -> str:
    """A text's cost for people, e.g. `2 segments (UCS-2 because of "’", 75 chars)`."""
    cost = segments(text)
    encoding = cost.encoding
    if encoding == "UCS-2":
        encoding += f' because of "{non_gsm_characters(text)[0]}"'
    size = f"{len(text)} chars"
    if cost.units != len(text):
        size += f", {cost.units} {'septets' if cost.encoding == 'GSM-7' else 'code units'}"
    plural = "" if cost.count == 1 else "s"
    return f"{cost.count} segment{plural} ({encoding}, {size})"
