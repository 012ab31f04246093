"""Properties (hypothesis): no text makes /sms fail; after an opt-out, only a keyword or
START changes the number's state."""

from __future__ import annotations

import itertools
import urllib.parse
import xml.etree.ElementTree as ET

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from flows.keywords import START_WORDS, first_word, normalise
from flows.loader import load_flows
from tests import database
from tests.conftest import BUSINESS_NUMBER, PUBLIC_URL, SHIPPED_FLOWS, sign

FLOWS = load_flows(SHIPPED_FLOWS)
# Function-scoped fixtures build one app (and database) per test, shared by its examples:
# each example uses fresh sids and phone numbers so that none sees another's messages.
PER_TEST_APP = hypothesis_settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
    max_examples=200,
)
_phones = itertools.count(2_000_000_000)
_sids = itertools.count(1)


def fresh_phone() -> str:
    """A number never used before in this session (+1 and ten digits: a possible US number)."""
    return f"+1{next(_phones)}"


def fresh_sid() -> str:
    return f"SM{next(_sids):032x}"


def assert_twiml(response) -> list[str]:
    """A 200 with a well-formed <Response> holding only <Message> elements; their texts."""
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "application/xml"
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    assert all(child.tag == "Message" for child in root)
    return [child.text or "" for child in root]


def stored_inbound(settings, sid: str) -> list[str]:
    return database.column(
        settings, "SELECT body FROM messages WHERE direction = 'in' AND sid = ?", sid
    )


def ledger_length(settings) -> int:
    return database.count(settings, "ledger")


# -- no text makes /sms fail --------------------------------------------------------------------

TRICKY = [
    "",
    "\x00",
    "JOIN\x00",
    "STOP\x00now",
    "\x01\x02\x03\x07\x08\x0b\x0c\x1b\x7f",
    "\r\n\t",
    "🎉🔥👍🏽👨‍👩‍👧‍👦🏳️‍🌈",
    "مرحبا STOP شكرا",  # Arabic (RTL)
    "\u202eJOIN\u202c",  # right-to-left override around a keyword
    "שלום",  # Hebrew
    "Z̸̡̛̤̖̓a̷̼͂l̶̳̏g̵͉̈o̴̟͊",  # stacked combining marks
    "e\u0301" * 50,
    "\ufeffYES",  # byte-order mark
    "\ufffd\ufffe\uffff",
    "<Message>&amp;</Response>]]>",
    "𝐉𝐎𝐈𝐍",  # mathematical bold, NFKC → JOIN
    "ＳＴＯＰ",
    "x" * 1600,
    "🎉" * 1600,
    "STOP " * 320,
]
texts = st.one_of(
    st.sampled_from(TRICKY),
    st.text(),
    st.text(st.characters(codec="utf-8", categories=("Cc", "Cf", "Mn", "Zs", "Po"))),
    # 1,600 characters, a full concatenated SMS: a short random run repeated.
    st.text(min_size=1).map(lambda s: (s * (1600 // len(s) + 1))[:1600]),
)


@PER_TEST_APP
@given(body=texts, opt_out_type=st.sampled_from(["", "STOP", "START", "HELP", "\x00"]))
def test_no_text_makes_sms_fail(twilio, settings, body, opt_out_type) -> None:
    sid = fresh_sid()
    extra = {"OptOutType": opt_out_type} if opt_out_type else {}
    assert_twiml(twilio.text(body, fresh_phone(), sid=sid, **extra))
    # Stored as received, NUL aside (PostgreSQL text can't hold it; the app replaces it).
    assert stored_inbound(settings, sid) == [body.replace("\x00", "\ufffd")]


@PER_TEST_APP
@given(history=st.lists(texts, max_size=6), body=texts)
def test_no_text_makes_sms_fail_in_any_state(twilio, history, body) -> None:
    # The same, after a random conversation that begins with a keyword (pending, subscribed,
    # answering questions or opted out, depending on what follows).
    phone = fresh_phone()
    for text in ["JOIN", *history]:
        assert_twiml(twilio.text(text, phone, sid=fresh_sid()))
    assert_twiml(twilio.text(body, phone, sid=fresh_sid()))


def as_werkzeug_decodes(raw: bytes) -> dict[str, str]:
    """The form werkzeug will hand the app for this urlencoded body: what Twilio signs."""
    environ = EnvironBuilder(
        method="POST", data=raw, content_type="application/x-www-form-urlencoded"
    ).get_environ()
    return Request(environ).form.to_dict()


def post_raw(client, raw: bytes) -> tuple[dict[str, str], object]:
    """POST a raw urlencoded body to /sms, signed over the form werkzeug decodes from it;
    returns that form and the response."""
    form = as_werkzeug_decodes(raw)
    response = client.post(
        "/sms",
        data=raw,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/sms", form)},
    )
    return form, response


def urlencoded(fields: list[tuple[str, bytes]]) -> bytes:
    return b"&".join(
        name.encode() + b"=" + urllib.parse.quote_from_bytes(value).encode()
        for name, value in fields
    )


raw_bodies = st.one_of(
    st.binary(max_size=200),  # mostly invalid UTF-8
    st.sampled_from([b"\xff", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"JOIN\xff", b"\xf4\x90"]),
    # lone surrogates, as a broken encoder would send them
    st.text(st.characters(categories=("Cs", "Lu", "So")), min_size=1).map(
        lambda s: s.encode("utf-8", "surrogatepass")
    ),
)


@PER_TEST_APP
@given(body=raw_bodies, in_from=st.booleans())
def test_invalid_utf8_in_the_form_gets_200_not_500(client, settings, body, in_from) -> None:
    sid = fresh_sid()
    phone = fresh_phone().encode()
    raw = urlencoded(
        [
            ("MessageSid", sid.encode()),
            ("AccountSid", b"AC" + b"0" * 32),
            ("From", phone + body if in_from else phone),
            ("To", BUSINESS_NUMBER.encode()),
            ("Body", body),
        ]
    )
    form, response = post_raw(client, raw)
    assert_twiml(response)
    assert stored_inbound(settings, sid) == [form["Body"].replace("\x00", "\ufffd")]


@PER_TEST_APP
@given(body=st.binary(max_size=50).map(lambda b: b + b"\xff"))  # never valid UTF-8
def test_unescaped_invalid_utf8_body_is_not_a_crash(client, settings, body) -> None:
    # Raw bytes outside %-escapes: werkzeug can't decode the form at all and hands the app
    # an empty one, so a signature over it is valid and the answer names the missing field.
    raw = b"MessageSid=" + fresh_sid().encode() + b"&From=%2B15555550100&Body=" + body
    form, response = post_raw(client, raw)
    assert form == {}
    assert response.status_code == 400
    assert response.get_data(as_text=True) == "missing field: From\n"


# -- after an opt-out word, only a keyword or START changes the number's state ----------------

STOPS = [
    "STOP",
    "stop!",
    "Stop.",
    "ＳＴＯＰ",
    "STOPALL",
    "Unsubscribe",
    "cancel",
    "END",
    "quit",
    "REVOKE",
    "optout",
    "OPT OUT",
    "opt-out",
    "please stop",
    "Stop texting me",
    "remove me",
    "wrong number",
    "leave me alone!!",
]
KEYWORDS = ["JOIN", "join!", "VIP", "ALERTS", "alerts downtown", "News", "START", "unstop"]
ANSWERS = ["12345", "SKIP", "DOWNTOWN", "harbor", "2", "04/21/1990", "me@example.com"]
OTHERS = ["YES", "y", "Yes!", "HELP", "info", "JOIN now", "VIP please", "hello", "stopped"]
messages = st.one_of(
    st.sampled_from(STOPS),
    st.sampled_from(KEYWORDS),
    st.sampled_from(ANSWERS),
    st.sampled_from(OTHERS),
    st.text(max_size=30),
)
PREFIXES = [[], ["JOIN"], ["JOIN", "YES"], ["JOIN", "YES", "94107"], ["ALERTS", "YES", "HARBOR"]]


def reopts(text: str) -> bool:
    """True for what may end an opt-out: START/UNSTOP, or a flow keyword (SPEC §5 rules 3, 5)."""
    normalised = normalise(text)
    if normalised in START_WORDS or normalised in FLOWS.by_keyword:
        return True
    flow = FLOWS.by_keyword.get(first_word(normalised))
    return flow is not None and flow.match == "first_word"


@PER_TEST_APP
@given(
    prefix=st.sampled_from(PREFIXES),
    stop=st.sampled_from(STOPS),
    later=st.lists(messages, min_size=1, max_size=10),
)
def test_after_an_opt_out_only_a_keyword_or_start_changes_state(
    twilio, store, settings, prefix, stop, later
) -> None:
    phone = fresh_phone()
    for text in [*prefix, stop]:
        assert_twiml(twilio.text(text, phone, sid=fresh_sid()))
    assert store.contact(phone).opted_out
    for text in later:
        before, events = store.contact(phone), ledger_length(settings)
        answer = assert_twiml(twilio.text(text, phone, sid=fresh_sid()))
        if not before.opted_out or reopts(text):
            continue
        assert store.contact(phone) == before, f"{text!r} changed an opted-out number's state"
        assert ledger_length(settings) == events, f"{text!r} wrote a consent event"
        # Rule 5: no reply to anything but HELP (rule 4) while opted out; STOP is not repeated.
        if normalise(text) not in ("help", "info"):
            assert answer == [], f"{text!r} got {answer!r} while opted out"
