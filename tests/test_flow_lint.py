"""The compliance lint (CTIA disclosures) and the length limits of flow texts."""

import pytest

from flows.lint import lint_frequency, lint_length, lint_prompt, lint_welcome
from flows.model import Frequency, Problem

NAMES = ("Acme VIP Deals", "Acme Coffee")
GOOD = (
    "Acme VIP Deals: reply YES to get up to 4 msgs/month. Msg & data rates may apply. "
    "Reply HELP for help, STOP to cancel."
)


def messages(problems: list[Problem]) -> list[str]:
    return [p.message for p in problems]


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param(GOOD, id="spec-example"),
        pytest.param(GOOD.replace("Acme VIP Deals", "ACME COFFEE"), id="brand-any-case"),
        pytest.param(GOOD.replace("Msg &", "Msg and"), id="msg-and-data-rates"),
        pytest.param(GOOD.replace("Msg &", "Message and"), id="message-and-data-rates"),
        pytest.param(GOOD.replace("Msg & data", "msg &  data"), id="rates-lower-case-spaces"),
        pytest.param(GOOD.replace("up to 4 msgs/month", "4 msgs per month"), id="msgs-per"),
        pytest.param(GOOD.replace("up to 4 msgs/month", "1 msg/day"), id="one-msg-a-day"),
        pytest.param(GOOD.replace("up to 4 msgs/month", "3 messages a week"), id="messages-a"),
        pytest.param(GOOD.replace("up to 4 msgs/month", "2 texts/wk"), id="texts-wk"),
        pytest.param(
            GOOD.replace("up to 4 msgs/month", "deals. Msg frequency varies"), id="varies"
        ),
        pytest.param(
            GOOD.replace("up to 4 msgs/month", "deals. Message frequency varies"),
            id="message-frequency-varies",
        ),
        pytest.param(GOOD.replace("STOP", "stop").replace("HELP", "help"), id="any-case-words"),
    ],
)
def test_compliant_prompts_pass(prompt):
    assert lint_prompt("vip.yaml", prompt, NAMES) == []


STOP = 'prompt must say how to opt out (e.g. "Reply STOP to cancel")'
HELP = 'prompt must say how to get help (e.g. "Reply HELP for help")'
RATES = 'prompt must say "Msg & data rates may apply"'
FREQUENCY = (
    "prompt must disclose the message frequency "
    '(e.g. "up to 4 msgs/month" or "Msg frequency varies")'
)
NAME = 'prompt must name the program or the brand ("Acme VIP Deals" or "Acme Coffee")'


@pytest.mark.parametrize(
    "prompt, expected",
    [
        pytest.param(GOOD.replace(", STOP to cancel", ""), [STOP], id="no-stop"),
        pytest.param(GOOD.replace("STOP to", "STOPPING to"), [STOP], id="stop-whole-word-only"),
        pytest.param(GOOD.replace("Reply HELP for help, ", "Reply "), [HELP], id="no-help"),
        pytest.param(GOOD.replace("HELP for help", "HELPDESK"), [HELP], id="help-whole-word"),
        pytest.param(GOOD.replace(" Msg & data rates may apply.", ""), [RATES], id="no-rates"),
        pytest.param(GOOD.replace("may apply", "apply"), [RATES], id="rates-misworded"),
        pytest.param(GOOD.replace("up to 4 msgs/month", "deals"), [FREQUENCY], id="no-frequency"),
        pytest.param(GOOD.replace("4 msgs/month", "4 msgs"), [FREQUENCY], id="count-no-unit"),
        pytest.param(GOOD.replace("Acme VIP Deals: r", "R"), [NAME], id="no-program-or-brand"),
        pytest.param("Reply YES", [NAME, STOP, HELP, RATES, FREQUENCY], id="each-is-a-problem"),
    ],
)
def test_prompt_lint_names_each_missing_disclosure(prompt, expected):
    problems = lint_prompt("vip.yaml", prompt, NAMES)
    assert messages(problems) == expected
    assert {(p.file, p.path, p.severity) for p in problems} == {
        ("vip.yaml", "replies.prompt", "error")
    }


@pytest.mark.parametrize(
    "welcome, expected",
    [
        pytest.param("Welcome! Reply STOP to cancel.", [], id="stop"),
        pytest.param("Welcome! Text stop to end.", [], id="stop-any-case"),
        pytest.param(
            "Welcome! Reply HELP for help.",
            ['welcome must say how to opt out (e.g. "Reply STOP to cancel")'],
            id="no-stop",
        ),
    ],
)
def test_welcome_must_say_how_to_stop(welcome, expected):
    assert messages(lint_welcome("vip.yaml", welcome)) == expected


@pytest.mark.parametrize(
    "cap, disclosure, warned",
    [
        pytest.param(Frequency(4, "month", None), "up to 4 msgs/month", False, id="stated"),
        pytest.param(Frequency(4, "month", None), "Up to 4 MSGS per mo", False, id="stated-mo"),
        pytest.param(Frequency(2, "week", None), "2 msgs/wk", False, id="stated-wk"),
        pytest.param(Frequency(4, "month", None), "up to 6 msgs/month", True, id="other-number"),
        pytest.param(Frequency(4, "month", None), "up to 4 msgs/week", True, id="other-unit"),
        pytest.param(Frequency(4, "month", None), "Msg frequency varies", True, id="varies"),
    ],
)
def test_frequency_cap_must_be_stated(cap, disclosure, warned):
    problems = lint_frequency("vip.yaml", cap, disclosure)
    assert [(p.path, p.severity) for p in problems] == (
        [("frequency", "warning")] if warned else []
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("a" * 160, [], id="one-segment"),
        pytest.param(
            "a" * 161,
            [("warning", "reply is 2 segments (GSM-7, 161 chars); a single segment holds 160")],
            id="two-segments",
        ),
        pytest.param("’" + "a" * 69, [], id="ucs2-one-segment"),
        pytest.param(
            "’" + "a" * 70,
            [
                (
                    "warning",
                    'reply is 2 segments (UCS-2 because of "’", 71 chars); '
                    "a single segment holds 70",
                )
            ],
            id="ucs2-two-segments",
        ),
        pytest.param(
            "a" * 1600,
            [("warning", "reply is 11 segments (GSM-7, 1600 chars); a single segment holds 160")],
            id="at-the-limit",
        ),
        pytest.param(
            "a" * 1601,
            [("error", "reply is 1,601 characters; the limit is 1,600")],
            id="over-twilio-limit",
        ),
    ],
)
def test_length_limits(text, expected):
    problems = lint_length("vip.yaml", "replies.done", text)
    assert [(p.severity, p.message) for p in problems] == expected
