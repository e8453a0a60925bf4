"""The generated reference pages match the code they are generated from (gateway/docgen.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from gateway import docgen
from gateway.observability.requestlog import RequestRecord
from tests.support import paths

REPO = paths.REPO


def test_every_generated_page_is_what_the_code_says() -> None:
    stale = docgen.drifted(REPO)
    assert not stale, (
        f"{', '.join(stale)} differ from the code: run `{docgen.REGENERATE}` and commit the result"
    )


def test_check_exits_1_and_names_the_command_when_a_page_drifted(tmp_path: Path) -> None:
    for relative, render in docgen.PAGES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(render())
    assert docgen.drifted(tmp_path) == []
    first = docgen.PAGES[0][0]
    (tmp_path / first).write_text("edited by hand\n")
    assert docgen.drifted(tmp_path) == [first]
    assert docgen.write(tmp_path) == [first]
    assert docgen.drifted(tmp_path) == []


def test_the_module_runs_as_a_command_in_check_mode() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.docgen", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_request_log_field_and_every_metric_is_on_its_page() -> None:
    log_page = docgen.render_request_log()
    for field in msgspec.structs.fields(RequestRecord):
        assert f"| `{field.encode_name}` |" in log_page
    metrics_page = docgen.render_metrics()
    for name in ("tollway_requests_total", "tollway_overhead_seconds", "tollway_target_breaker_state"):
        assert f"| `{name}` |" in metrics_page


def test_field_comments_are_read_from_the_source_above_and_beside_a_field() -> None:
    class Example(msgspec.Struct):
        # the comment above
        # in two lines
        above: int = 1
        beside: int = 2  # the comment beside
        bare: int = 3

    comments = docgen.field_comments(Example)
    assert comments == {"above": "the comment above in two lines", "beside": "the comment beside"}
