"""Loading a flows folder: the shipped definitions, defaults, lookups, and broken files."""

import hashlib
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from flows.check import problem_line
from flows.keywords import normalise
from flows.loader import check_flows, load_flows
from flows.model import FlowError, Frequency, Question

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "flows" / "definitions"
FIXTURES = Path(__file__).resolve().parent / "flows"
BROKEN = FIXTURES / "broken"
WARNINGS = FIXTURES / "warnings"

PROMPT = (
    "Acme VIP Deals: reply YES to get up to 4 msgs/month. Msg & data rates may apply. "
    "Reply HELP for help, STOP to cancel."
)
WELCOME = "Welcome to Acme VIP Deals! Reply HELP for help, STOP to cancel."


def write_flow(folder: Path, extra: str = "", replies: str = "", name: str = "vip.yaml") -> Path:
    """A folder with the test gateway.yaml and one valid flow, plus `extra` top-level keys."""
    shutil.copy(FIXTURES / "gateway.yaml", folder)
    text = f"flow: vip\nkeywords: [JOIN]\nprogram: Acme VIP Deals\n{extra}"
    text += f'replies:\n  prompt: "{PROMPT}"\n  welcome: "{WELCOME}"\n{replies}'
    (folder / name).write_text(text)
    return folder


def case_folder(root: Path, case: str, tmp_path: Path) -> Path:
    """A folder case as it is; a file case beside the known-good gateway.yaml."""
    if (root / case).is_dir():
        return root / case
    shutil.copy(FIXTURES / "gateway.yaml", tmp_path)
    shutil.copy(root / f"{case}.yaml", tmp_path)
    return tmp_path


def cases(root: Path) -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.suffix != ".txt")


@pytest.fixture(scope="module")
def shipped():
    return load_flows(DEFINITIONS)


def test_shipped_definitions_have_no_problems():
    flow_set, problems = check_flows(DEFINITIONS)
    assert [problem_line(p) for p in problems] == []
    assert [flow.id for flow in flow_set.flows] == ["alerts", "vip"]  # sorted by file name


def test_gateway_texts_are_read_from_gateway_yaml(shipped):
    gateway = shipped.gateway
    assert gateway.brand == "Acme Coffee"
    assert gateway.stop.startswith("Acme Coffee: you're unsubscribed")
    assert gateway.default == ""
    assert gateway.opt_out_phrases == (
        "stop texting me",
        "remove me",
        "wrong number",
        "leave me alone",
    )


def test_vip_flow_is_read_as_written(shipped):
    vip = shipped.flow("vip")
    assert vip.keywords == ("JOIN", "VIP")  # as written; the lookup is normalised
    assert (vip.match, vip.program, vip.double_opt_in) == ("only_word", "Acme VIP Deals", True)
    assert vip.confirm_words == ("yes", "y")  # normalised, as the engine compares them
    assert vip.confirm_within == timedelta(hours=24)
    assert vip.frequency == Frequency(4, "month", timedelta(days=30))
    assert vip.replies.expired == "That sign-up code expired. Text JOIN to start again."
    assert vip.questions == (
        Question(
            field="zip",
            ask="What's your ZIP code? (optional, reply SKIP)",
            expect="us_zip",
            invalid="That doesn't look like a ZIP code. Try again or reply SKIP.",
        ),
    )


@pytest.mark.parametrize(
    "reply, expected",
    [
        pytest.param(
            "already_subscribed",
            "You're already subscribed to Acme Coffee Alerts. Reply HELP for help, STOP to cancel.",
            id="already_subscribed",
        ),
        pytest.param(
            "expired",
            "Acme Coffee Alerts: that sign-up request has expired. Text ALERTS to start again.",
            id="expired-names-first-keyword",
        ),
        pytest.param(
            "help",
            "Acme Coffee Alerts: reply STOP to cancel. Acme Coffee: text JOIN for deals. "
            "Reply STOP to opt out. Msg & data rates may apply. Help: acme.example/sms",
            id="help-adds-gateway-help",
        ),
        pytest.param("done", "Thanks, you're all set!", id="done"),
    ],
)
def test_missing_replies_get_default_wording(shipped, reply, expected):
    assert getattr(shipped.flow("alerts").replies, reply) == expected


def test_flow_defaults_apply_when_keys_are_absent(tmp_path):
    flow = load_flows(write_flow(tmp_path)).flow("vip")
    assert (flow.match, flow.double_opt_in, flow.frequency, flow.questions) == (
        "only_word",
        True,
        None,
        (),
    )
    assert flow.confirm_words == ("yes", "y")
    assert flow.confirm_within == timedelta(hours=24)


def test_unquoted_yes_and_on_are_words_as_in_the_spec_example(tmp_path):
    # Regression: YAML 1.1 read the SPEC's own `confirm_words: [YES, Y]` as [true, "Y"].
    flow = load_flows(write_flow(tmp_path, extra="confirm_words: [YES, Y, ON]\n")).flow("vip")
    assert flow.confirm_words == ("yes", "y", "on")


@pytest.mark.parametrize("written, expected", [("no", False), ("yes", True), ("false", False)])
def test_double_opt_in_reads_yes_and_no(tmp_path, written, expected):
    flow = load_flows(write_flow(tmp_path, extra=f"double_opt_in: {written}\n")).flow("vip")
    assert flow.double_opt_in is expected


def test_program_defaults_to_the_brand(tmp_path):
    folder = write_flow(tmp_path)
    text = (folder / "vip.yaml").read_text().replace("program: Acme VIP Deals\n", "")
    (folder / "vip.yaml").write_text(text.replace("Acme VIP Deals:", "Acme Coffee:"))
    assert load_flows(folder).flow("vip").program == "Acme Coffee"


def test_question_defaults(shipped):
    store, birthday = shipped.flow("alerts").questions
    assert store.choices == ("DOWNTOWN", "HARBOR", "CAMPUS")
    assert birthday.choices == ()
    assert birthday.invalid == f"Sorry, that isn't a valid answer. {birthday.ask}"


def test_single_opt_in_needs_no_prompt(tmp_path):
    folder = write_flow(tmp_path, extra="double_opt_in: false\n")
    text = (folder / "vip.yaml").read_text()
    (folder / "vip.yaml").write_text(text.replace(f'  prompt: "{PROMPT}"\n', ""))
    flow = load_flows(folder).flow("vip")
    assert (flow.double_opt_in, flow.replies.prompt) == (False, "")


@pytest.mark.parametrize(
    "text, flow_id",
    [
        pytest.param("JOIN", "vip", id="as-written"),
        pytest.param("vip", "vip", id="alias-lower-case"),
        pytest.param("Ｊｏｉｎ!", "vip", id="full-width-with-punctuation"),
        pytest.param("alerts", "alerts", id="first-word-flow"),
        pytest.param("NEWS", "alerts", id="first-word-flow-alias"),
    ],
)
def test_keyword_lookup_uses_normalised_text(shipped, text, flow_id):
    assert shipped.by_keyword[normalise(text)].id == flow_id


def test_lookup_holds_every_keyword_and_nothing_else(shipped):
    assert sorted(shipped.by_keyword) == ["alerts", "join", "news", "vip"]


@pytest.mark.parametrize(
    "written, expected",
    [
        pytest.param("30m", timedelta(minutes=30), id="minutes"),
        pytest.param("24h", timedelta(hours=24), id="hours"),
        pytest.param("2d", timedelta(days=2), id="days"),
        pytest.param("90m", timedelta(minutes=90), id="minutes-over-an-hour"),
    ],
)
def test_confirm_within_is_parsed(tmp_path, written, expected):
    flow = load_flows(write_flow(tmp_path, extra=f"confirm_within: {written}\n")).flow("vip")
    assert flow.confirm_within == expected


@pytest.mark.parametrize(
    "written, expected",
    [
        pytest.param("1/day", Frequency(1, "day", timedelta(days=1)), id="day"),
        pytest.param("3/week", Frequency(3, "week", timedelta(days=7)), id="week"),
        pytest.param("4/month", Frequency(4, "month", timedelta(days=30)), id="month"),
    ],
)
def test_frequency_is_parsed(tmp_path, written, expected):
    flow = load_flows(write_flow(tmp_path, extra=f"frequency: {written}\n")).flow("vip")
    assert flow.frequency == expected


def test_content_hash_is_the_sha256_of_the_file(shipped):
    for flow in shipped.flows:
        assert (
            flow.content_hash == hashlib.sha256((DEFINITIONS / flow.file).read_bytes()).hexdigest()
        )
    gateway_bytes = (DEFINITIONS / "gateway.yaml").read_bytes()
    assert shipped.gateway.content_hash == hashlib.sha256(gateway_bytes).hexdigest()


def test_content_hash_changes_with_any_byte_of_the_file(tmp_path):
    # The hash is consent evidence (SPEC §7): even a comment changes what was in force.
    folder = write_flow(tmp_path)
    before = load_flows(folder).flow("vip").content_hash
    (folder / "vip.yaml").write_text((folder / "vip.yaml").read_text() + "# reviewed\n")
    assert load_flows(folder).flow("vip").content_hash != before


def test_only_yaml_files_at_the_top_of_the_folder_are_flows(tmp_path):
    write_flow(tmp_path)
    (tmp_path / "drafts").mkdir()
    write_flow(tmp_path / "drafts", name="draft.yaml")
    (tmp_path / "notes.txt").write_text("not a flow")
    (tmp_path / "old.yml").write_text("flow: old\n")
    flow_set, problems = check_flows(tmp_path)
    assert [flow.file for flow in flow_set.flows] == ["vip.yaml"]
    assert [problem_line(p) for p in problems] == [
        "warning: old.yml: .: ignored: flow files end in .yaml"
    ]


def test_folder_without_flows_loads_with_a_warning(tmp_path):
    shutil.copy(FIXTURES / "gateway.yaml", tmp_path)
    flow_set, problems = check_flows(tmp_path)
    assert flow_set.flows == () and flow_set.by_keyword == {}
    assert [p.severity for p in problems] == ["warning"]


def test_missing_folder_is_an_error(tmp_path):
    flow_set, problems = check_flows(tmp_path / "nowhere")
    assert flow_set is None
    assert [(p.file, p.path, p.severity) for p in problems] == [(".", ".", "error")]


def test_load_flows_raises_with_every_error_and_no_warning(tmp_path):
    too_long = '  done: "' + "x" * 170 + '"\n'  # a warning: two segments
    write_flow(tmp_path, extra="match: any\nconfirm_within: soon\n", replies=too_long)
    with pytest.raises(FlowError) as raised:
        load_flows(tmp_path)
    assert str(raised.value).splitlines() == [
        "vip.yaml: match: expected only_word or first_word, got 'any'",
        "vip.yaml: confirm_within: expected a duration like 24h (a whole number, then m, h or d),"
        " got 'soon'",
    ]
    assert {p.severity for p in raised.value.problems} == {"error"}


def test_every_broken_case_has_its_expected_errors():
    inputs = set(cases(BROKEN))
    expected = {p.stem for p in BROKEN.glob("*.txt")}
    assert inputs == expected
    assert all((BROKEN / f"{case}.txt").read_text().strip() for case in inputs)


@pytest.mark.parametrize("case", cases(BROKEN))
def test_broken_flow_reports_exact_errors(case, tmp_path):
    folder = case_folder(BROKEN, case, tmp_path)
    flow_set, problems = check_flows(folder)
    assert [problem_line(p) for p in problems] == (BROKEN / f"{case}.txt").read_text().splitlines()
    assert flow_set is None
    with pytest.raises(FlowError):
        load_flows(folder)


@pytest.mark.parametrize("case", cases(WARNINGS))
def test_warnings_are_reported_but_never_stop_loading(case, tmp_path):
    folder = case_folder(WARNINGS, case, tmp_path)
    flow_set, problems = check_flows(folder)
    assert [problem_line(p) for p in problems] == (
        WARNINGS / f"{case}.txt"
    ).read_text().splitlines()
    assert problems and all(p.severity == "warning" for p in problems)
    assert load_flows(folder) == flow_set
