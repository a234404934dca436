"""``mmalign ingest`` / ``mmalign info`` through the CLI: exit codes, stderr, stdout."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmalign.cli import app
from test_ingest import make_kgs

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_workdir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMALIGN_WORKDIR", raising=False)


def test_ingest_prints_summary_on_stderr_only_then_up_to_date(tmp_path: Path) -> None:
    kg1, kg2 = make_kgs(tmp_path)
    work = tmp_path / "work"
    result = runner.invoke(app, ["ingest", str(kg1), str(kg2), "-w", str(work)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "relation triples" in result.stderr and "ingest took" in result.stderr
    again = runner.invoke(app, ["ingest", str(kg1), str(kg2), "-w", str(work)])
    assert again.exit_code == 0 and "workspace up to date" in again.stderr and again.stdout == ""


def test_default_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kg1, kg2 = make_kgs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["ingest", str(kg1), str(kg2), "-q"]).exit_code == 0
    assert (tmp_path / "mmalign-work" / "manifest.json").is_file()
    assert runner.invoke(app, ["info"]).exit_code == 0


def test_bad_line_exit_2_one_line_and_no_workspace(tmp_path: Path) -> None:
    kg1, kg2 = make_kgs(tmp_path)
    (kg2 / "triples.tsv").write_text("al\tfriend\tbo\nal\tfriend\n")
    work = tmp_path / "work"
    result = runner.invoke(app, ["ingest", str(kg1), str(kg2), "-w", str(work)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {kg2 / 'triples.tsv'}:2: expected 3 tab-separated columns, found 2"
    )
    assert not work.exists()
    skipped = runner.invoke(app, ["ingest", str(kg1), str(kg2), "-w", str(work), "--skip-bad-lines"])
    assert skipped.exit_code == 0 and "skipped 1 bad line" in skipped.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "{tmp}/missing", "{tmp}/kg2"], "{tmp}/missing: does not exist"),
        (["ingest", "{tmp}/kg1"], "not a benchmark folder"),
        (["info"], "no workspace here"),
    ],
)
def test_user_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    make_kgs(tmp_path)
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args] + ["-w", str(tmp_path / "work")])
    assert result.exit_code == 2
    assert message.format(tmp=tmp_path) in result.stderr and "Traceback" not in result.output


def test_info_table_and_json(tmp_path: Path) -> None:
    kg1, kg2 = make_kgs(tmp_path)
    work = tmp_path / "work"
    runner.invoke(app, ["ingest", str(kg1), str(kg2), "-w", str(work), "-q"])
    table = runner.invoke(app, ["info", "-w", str(work)])
    assert table.exit_code == 0 and "attribute triples" in table.stderr and table.stdout == ""
    as_json = runner.invoke(app, ["info", "-w", str(work), "--json"])
    counts = json.loads(as_json.stdout)
    assert counts["kg1"]["entities"] == 4 and counts["kg2"]["relation_triples"] == 2 and counts["links"] == 0


def test_rdf_syntax_error_one_line_with_line_and_column(tmp_path: Path) -> None:
    kg1, kg2 = make_kgs(tmp_path)
    (kg1 / "data.ttl").unlink()
    bad = kg1 / "data.nt.xz"
    bad.write_bytes(lzma.compress(b'<http://e/a> <http://e/p> <http://e/b> .\n<http://e/a> <http://e/p> "x\n'))
    result = runner.invoke(app, ["ingest", str(kg1), str(kg2), "-w", str(tmp_path / "work")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {bad}:2:27: N-Triples syntax error: Unexpected end of file"
    skipped = runner.invoke(app, ["ingest", str(kg1), str(kg2), "-w", str(tmp_path / "work"), "--skip-bad-lines"])
    assert skipped.exit_code == 0 and "skipped 1 bad line (first: line 2:27:" in skipped.stderr
