"""The report `flask flows check` prints."""

import shutil
from pathlib import Path

from flows.check import report

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "flows" / "definitions"
FIXTURES = Path(__file__).resolve().parent / "flows"


def folder_with(tmp_path: Path, *cases: Path) -> Path:
    shutil.copy(FIXTURES / "gateway.yaml", tmp_path)
    for case in cases:
        shutil.copy(case, tmp_path)
    return tmp_path


def test_shipped_flows_pass_with_a_segment_line_per_text():
    lines, ok = report(DEFINITIONS)
    assert ok
    assert lines[-1] == "2 flows, 0 errors, 0 warnings"
    assert "gateway.yaml: help: 1 segment (GSM-7, 107 chars)" in lines
    assert "vip.yaml: replies.prompt: 1 segment (GSM-7, 117 chars)" in lines
    assert "alerts.yaml: questions[1].invalid: 1 segment (GSM-7, 95 chars)" in lines
    # Every text sent: 3 non-empty gateway texts; 6 replies and 2 per question in each flow.
    assert len(lines) == 3 + (6 + 2 * 2) + (6 + 2 * 1) + 1


def test_empty_texts_get_no_segment_line():
    lines, _ = report(DEFINITIONS)
    assert not any(line.startswith("gateway.yaml: default:") for line in lines)


def test_errors_fail_the_check_and_print_as_file_path_message(tmp_path):
    folder = folder_with(tmp_path, FIXTURES / "broken" / "welcome-without-stop.yaml")
    lines, ok = report(folder)
    assert not ok
    assert lines == [
        "welcome-without-stop.yaml: replies.welcome: welcome must say how to opt out "
        '(e.g. "Reply STOP to cancel")',
        "1 flow, 1 error, 0 warnings",
    ]


def test_warnings_are_prefixed_and_pass_the_check(tmp_path):
    folder = folder_with(tmp_path, FIXTURES / "warnings" / "frequency-not-in-prompt.yaml")
    lines, ok = report(folder)
    assert ok
    assert lines[0] == (
        "warning: frequency-not-in-prompt.yaml: frequency: "
        'the prompt doesn\'t state this cap (e.g. "up to 6 msgs/month")'
    )
    assert "frequency-not-in-prompt.yaml: replies.welcome: 1 segment (GSM-7, 63 chars)" in lines
    assert lines[-1] == "1 flow, 0 errors, 1 warning"


def test_missing_folder_fails_the_check(tmp_path):
    lines, ok = report(tmp_path / "nowhere")
    assert not ok
    assert lines[-1] == "0 flows, 1 error, 0 warnings"
