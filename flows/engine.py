"""The engine: what one inbound message does to one number (SPEC §5). A pure function."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime

from flows.answers import check_answer
from flows.contact import NEW, OPTED_OUT, PENDING, SUBSCRIBED, Contact, Subscription
from flows.keywords import first_word, is_help, is_opt_out, is_start, normalise
from flows.machine import fire
from flows.model import Flow, FlowSet
from flows.outcome import ConsentEvent, Inbound, Outcome, Reply

SKIP = "skip"


@dataclass
class _Effects:
    """What a message's handling has decided so far: replies, events, profile answers."""

    message: Inbound
    flows: FlowSet
    now: datetime
    replies: list[Reply] = field(default_factory=list)
    events: list[ConsentEvent] = field(default_factory=list)
    profile: list[tuple[str, str]] = field(default_factory=list)

    def reply(self, text: str, flow: Flow | None = None) -> None:
        if text:
            self.replies.append(Reply(text, flow.id if flow else None))

    def record(self, event: str, flow: Flow | None, disclosure: str | None) -> None:
        evidence = {
            "disclosure": disclosure,
            "flow_hash": flow.content_hash if flow else None,
            "gateway_hash": self.flows.gateway.content_hash,
            "signature_verified": self.message.signature_verified,
            "inbound_sha256": hashlib.sha256(
                self.message.body.encode("utf-8", "replace")
            ).hexdigest()
            if self.message.source == "sms"
            else None,
            **self.message.context,
        }
        flow_id = flow.id if flow else None
        self.events.append(
            ConsentEvent(event, flow_id, self.message.source, self.message.sid, evidence)
        )

    def outcome(self, rule: str, contact: Contact, flow: Flow | None = None) -> Outcome:
        return Outcome(
            rule=rule,
            contact=contact,
            replies=tuple(self.replies),
            events=tuple(self.events),
            profile=tuple(self.profile),
            flow=flow.id if flow else None,
        )


class _Turn:
    """The model `transitions` drives for one flow during one message; it only records."""

    def __init__(self, flow: Flow, state: str, fx: _Effects, question: int | None):
        self.flow = flow
        self.state = state  # the attribute transitions reads and moves
        self.fx = fx
        self.question = question
        self.requested = False  # a prompt went out: the confirmation window starts now

    def send_prompt(self) -> None:
        self.fx.reply(self.flow.replies.prompt, self.flow)

    def send_welcome(self) -> None:
        self.fx.reply(self.flow.replies.welcome, self.flow)

    def send_already(self) -> None:
        self.fx.reply(self.flow.replies.already_subscribed, self.flow)

    def ask_first(self) -> None:
        if self.flow.questions:
            self.question = 0
            self.fx.reply(self.flow.questions[0].ask, self.flow)

    def record_requested(self) -> None:
        self.requested = True
        self.fx.record("requested", self.flow, self.flow.replies.prompt)

    def record_confirmed(self) -> None:
        self.fx.record("confirmed", self.flow, self.flow.replies.welcome)

    def record_expired(self) -> None:
        self.fx.record("expired", self.flow, None)

    def record_opted_out(self) -> None:
        self.fx.record("opted_out", self.flow, self.fx.flows.gateway.stop)

    def record_opted_in_again(self) -> None:
        self.fx.record("opted_in_again", self.flow, self.fx.flows.gateway.start)


def _step(fx: _Effects, contact: Contact, flow: Flow, trigger: str) -> Contact:
    """Fire `trigger` on the number's subscription to `flow` and return the new state."""
    sub = contact.subscription(flow.id)
    state = sub.state if sub else NEW
    turn = _Turn(flow, state, fx, sub.question if sub else None)
    fire(flow, turn, trigger)
    question = turn.question if turn.state == SUBSCRIBED else None
    if sub and turn.state == state and question == sub.question and not turn.requested:
        return contact
    since = sub.since if sub and turn.state == state and not turn.requested else fx.now
    return contact.with_subscription(Subscription(flow.id, turn.state, since, question))


def _keyword_flow(text: str, flows: FlowSet) -> Flow | None:
    flow = flows.by_keyword.get(text)
    if flow is None:
        flow = flows.by_keyword.get(first_word(text))
        if flow is not None and flow.match != "first_word":
            return None
    return flow


def _opt_out(fx: _Effects, contact: Contact) -> Outcome:
    # FCC 24-18: one confirmation at most; a number already opted out hears nothing more.
    if contact.opted_out:
        return fx.outcome("opt_out", contact)
    active = contact.active()
    for sub in active:
        flow = fx.flows.flow(sub.flow)
        if flow is None:  # its YAML file was removed; the opt-out must still end it
            fx.events.append(
                ConsentEvent("opted_out", sub.flow, fx.message.source, fx.message.sid, {})
            )
            contact = contact.with_subscription(Subscription(sub.flow, OPTED_OUT, fx.now))
        else:
            contact = _step(fx, contact, flow, "opt_out")
    if not active:
        fx.record("opted_out", None, fx.flows.gateway.stop)
    restorable = tuple(s.flow for s in active if s.state == SUBSCRIBED)
    fx.reply(fx.flows.gateway.stop)
    return fx.outcome("opt_out", replace(contact, opted_out=True, restorable=restorable))


def _start(fx: _Effects, contact: Contact) -> Outcome:
    restored = 0
    for flow_id in contact.restorable:
        flow = fx.flows.flow(flow_id)
        sub = contact.subscription(flow_id)
        if flow is not None and sub is not None and sub.state == OPTED_OUT:
            contact = _step(fx, contact, flow, "restore")
            restored += 1
    if not restored:
        fx.record("opted_in_again", None, fx.flows.gateway.start)
    fx.reply(fx.flows.gateway.start)
    return fx.outcome("start", replace(contact, opted_out=False, restorable=()))


def _help(fx: _Effects, contact: Contact) -> Outcome:
    known = [f for s in contact.active() if (f := fx.flows.flow(s.flow)) is not None]
    if len(known) == 1:
        fx.reply(known[0].replies.help, known[0])
        return fx.outcome("help", contact, known[0])
    fx.reply(fx.flows.gateway.help)
    return fx.outcome("help", contact)


def _keyword(fx: _Effects, contact: Contact, flow: Flow) -> Outcome:
    sub = contact.subscription(flow.id)
    if sub and sub.state == PENDING and fx.now - sub.since > flow.confirm_within:
        # A stale request is closed and a fresh one starts, with its own confirm window.
        contact = _step(fx, contact, flow, "expire")
    return fx.outcome("keyword", _step(fx, contact, flow, "keyword"), flow)


def _confirm(fx: _Effects, contact: Contact, text: str) -> Outcome | None:
    # Rule 7: the most recent pending flow this word confirms; on equal times the one
    # changed last (subscriptions are kept in the order they changed).
    pending = [
        (sub, flow)
        for sub in contact.subscriptions
        if sub.state == PENDING
        and (flow := fx.flows.flow(sub.flow)) is not None
        and text in flow.confirm_words
    ]
    if not pending:
        return None
    sub, flow = max(reversed(pending), key=lambda item: item[0].since)
    if fx.now - sub.since <= flow.confirm_within:
        return fx.outcome("confirm", _step(fx, contact, flow, "confirm"), flow)
    contact = _step(fx, contact, flow, "expire")
    fx.reply(flow.replies.expired, flow)
    return fx.outcome("expired", contact, flow)


def _answer(fx: _Effects, contact: Contact, text: str) -> Outcome | None:
    asking = [
        (sub, flow)
        for sub in contact.subscriptions
        if sub.state == SUBSCRIBED
        and sub.question is not None
        and (flow := fx.flows.flow(sub.flow)) is not None
        and sub.question < len(flow.questions)
    ]
    if not asking:
        return None
    sub, flow = max(asking, key=lambda item: item[0].since)
    question = flow.questions[sub.question]
    if text != SKIP:
        value = check_answer(question, fx.message.body)
        if value is None:
            fx.reply(question.invalid, flow)
            return fx.outcome("question", contact, flow)
        fx.profile.append((question.field, value))
    following = sub.question + 1
    if following < len(flow.questions):
        fx.reply(flow.questions[following].ask, flow)
    else:
        following = None
        fx.reply(flow.replies.done, flow)
    return fx.outcome("question", contact.with_subscription(replace(sub, question=following)), flow)


def handle(message: Inbound, contact: Contact, flows: FlowSet, now: datetime) -> Outcome:
    """Apply SPEC §5's rules, in order, to one message from one number."""
    fx = _Effects(message, flows, now)
    text = normalise(message.body)
    kind = message.opt_out_type.strip().upper()
    # Compliance is code, not configuration: these rules run before any flow.
    if kind == "STOP" or is_opt_out(text, flows.gateway.opt_out_phrases):
        return _opt_out(fx, contact)
    if (kind == "START" or is_start(text)) and contact.opted_out:
        return _start(fx, contact)
    if kind in ("START", "HELP") or is_start(text) or is_help(text):
        return _help(fx, contact)
    flow = _keyword_flow(text, flows)
    if contact.opted_out:
        if flow is None:
            return fx.outcome("opted_out", contact)  # rule 5: nothing else un-stops a number
        # A keyword is a new, explicit opt-in request; the old opt-out no longer silences.
        contact = replace(contact, opted_out=False, restorable=())
    if flow is not None:
        return _keyword(fx, contact, flow)
    return _confirm(fx, contact, text) or _answer(fx, contact, text) or _default(fx, contact)


def handle_web_optin(
    message: Inbound, contact: Contact, flows: FlowSet, flow: Flow, now: datetime
) -> Outcome:
    """A web form's opt-in request (SPEC §3): the keyword rule, recorded with source web."""
    return _keyword(_Effects(message, flows, now), contact, flow)


def handle_carrier_opt_out(
    message: Inbound, contact: Contact, flows: FlowSet, now: datetime
) -> Outcome:
    """Twilio error 21610: the number replied STOP to the carrier. It is opted out like any
    STOP, but nothing is sent: Twilio blocks every message to it now."""
    return replace(_opt_out(_Effects(message, flows, now), contact), replies=())


def _default(fx: _Effects, contact: Contact) -> Outcome:
    fx.reply(fx.flows.gateway.default)
    return fx.outcome("default", contact)
