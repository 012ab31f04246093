"""Phone numbers: parsing to E.164 (the only form smsbot stores)."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers


# phonenumbers parsing is slow next to the rest of a webhook; a conversation's messages
# come from recent numbers, and a bounded cache (about 3 MB when full) keeps memory flat.
@lru_cache(maxsize=16384)
def to_e164(text: str, region: str | None = None) -> str | None:
    """The E.164 form of `text`, or None when it is not a possible phone number.

    Short codes and alphanumeric sender ids are not phone numbers (SPEC §5).
    """
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    # IS_POSSIBLE only: a 7-digit local number ("555-0100") is "possible locally" but has
    # no area code, and would become a bogus E.164 number.
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
