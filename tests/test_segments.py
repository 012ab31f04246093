"""SMS segment counting: GSM-7 septets, UCS-2 code units, concatenation headers."""

import pytest

from flows.segments import Segments, describe, segments


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("", Segments("GSM-7", 0, 0), id="empty"),
        pytest.param("a" * 160, Segments("GSM-7", 160, 1), id="ascii-160-fits-one"),
        pytest.param("a" * 161, Segments("GSM-7", 161, 2), id="ascii-161-needs-two"),
        pytest.param("a" * 306, Segments("GSM-7", 306, 2), id="ascii-306-fills-two-of-153"),
        pytest.param("a" * 307, Segments("GSM-7", 307, 3), id="ascii-307-needs-three"),
        pytest.param("a" * 1600, Segments("GSM-7", 1600, 11), id="twilio-limit-1600"),
        pytest.param("é@£¥Ñß¿§\n", Segments("GSM-7", 9, 1), id="gsm-basic-accents"),
        pytest.param("€" * 80, Segments("GSM-7", 160, 1), id="euro-costs-two-septets"),
        pytest.param("€" * 81, Segments("GSM-7", 162, 2), id="euro-81-overflows"),
        pytest.param("[" + "a" * 159, Segments("GSM-7", 161, 2), id="bracket-costs-two"),
        pytest.param("^" + "a" * 158, Segments("GSM-7", 160, 1), id="caret-costs-two"),
        pytest.param("{}\\~]|", Segments("GSM-7", 12, 1), id="extension-table"),
        pytest.param(
            "a" * 152 + "€" + "a" * 152,
            Segments("GSM-7", 306, 3),
            id="escape-pair-not-split-across-segments",
        ),
        pytest.param("😀", Segments("UCS-2", 2, 1), id="emoji-is-ucs2-surrogate-pair"),
        pytest.param("’" + "a" * 69, Segments("UCS-2", 70, 1), id="ucs2-70-fits-one"),
        pytest.param("’" + "a" * 70, Segments("UCS-2", 71, 2), id="ucs2-71-needs-two"),
        pytest.param("’" + "a" * 133, Segments("UCS-2", 134, 2), id="ucs2-134-fills-two-of-67"),
        pytest.param("’" + "a" * 134, Segments("UCS-2", 135, 3), id="ucs2-135-needs-three"),
        pytest.param(
            "a" * 66 + "😀" + "a" * 66,
            Segments("UCS-2", 134, 3),
            id="surrogate-pair-not-split-across-segments",
        ),
        pytest.param("ê", Segments("UCS-2", 1, 1), id="non-gsm-accent"),
        pytest.param("\t", Segments("UCS-2", 1, 1), id="tab-is-not-gsm"),
        pytest.param("€" + "’", Segments("UCS-2", 2, 1), id="ucs2-extension-chars-cost-one"),
    ],
)
def test_segments(text, expected):
    assert segments(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("a" * 139, "1 segment (GSM-7, 139 chars)", id="one-segment"),
        pytest.param("a" * 161, "2 segments (GSM-7, 161 chars)", id="plural"),
        pytest.param("€5 off", "1 segment (GSM-7, 6 chars, 7 septets)", id="septets-shown"),
        pytest.param(
            "Hi 😀", '1 segment (UCS-2 because of "😀", 4 chars, 5 code units)', id="emoji"
        ),
        pytest.param("you’re in", '1 segment (UCS-2 because of "’", 9 chars)', id="curly-quote"),
    ],
)
def test_describe_names_the_cost_and_its_cause(text, expected):
    assert describe(text) == expected
