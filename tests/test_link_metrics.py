"""``mmalign evaluate --links``: numbers worked out by hand, and malformed link files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmalign.cli import app
from test_links import workdir  # noqa: F401  (the fixture: a workspace of a0..a119, b0..b119)

LINKS = """kg1_entity\tkg2_entity\tconfidence\tband
a50\tb50\t0.95\taccept
a51\tb52\t0.90\taccept
a90\tb90\t0.85\taccept
a53\tb53\t0.60\treview
a54\tb55\t0.40\treview
a55\t\t0.0\treject
a56\tb56\t0.20\treject
"""
GOLD = "".join(f"a{i}\tb{i}\n" for i in (50, 51, 53, 54, 55, 56, 57))


def evaluate(workdir: Path, tmp_path: Path, links: str, *args: str) -> object:
    (tmp_path / "links.tsv").write_text(links)
    (tmp_path / "gold.tsv").write_text(GOLD)
    return CliRunner().invoke(app, ["evaluate", "-w", str(workdir), "--links", str(tmp_path / "links.tsv"),
                                    "--gold", str(tmp_path / "gold.tsv"), *args])


def test_numbers_by_hand(workdir: Path, tmp_path: Path) -> None:  # noqa: F811
    result = evaluate(workdir, tmp_path, LINKS, "--json")
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["entities"] == 8 and scored["gold_pairs"] == 7 and scored["links"] == 6
    bands = {group["band"]: group for group in scored["bands"]}
    # accept: a50 right; a51 wrong; a90 has no gold link, a false positive. a57 has no row: missed.
    assert bands["accept"] == pytest.approx({"band": "accept", "links": 3, "correct": 1, "precision": 1 / 3,
                                             "recall": 1 / 7, "f1": 0.2})
    assert bands["review"] == pytest.approx({"band": "review", "links": 2, "correct": 1, "precision": 0.5,
                                             "recall": 1 / 7, "f1": 2 * 0.5 / 7 / (0.5 + 1 / 7)})
    assert bands["accept+review"] == pytest.approx({"band": "accept+review", "links": 5, "correct": 2, "precision": 0.4,
                                                    "recall": 2 / 7, "f1": 1 / 3})
    # a55's no-match row is no link; a56's rejected candidate was right.
    assert bands["reject"]["links"] == 1 and bands["reject"]["precision"] == 1.0
    bins = {round(b["low"], 1): b for b in scored["calibration"] if b["count"]}
    assert sorted(bins) == [0.2, 0.4, 0.6, 0.8, 0.9]
    assert bins[0.9]["count"] == 2 and bins[0.9]["confidence"] == pytest.approx(0.925) and bins[0.9]["precision"] == 0.5
    assert scored["ece"] == pytest.approx((2 * 0.425 + 0.85 + 0.4 + 0.4 + 0.8) / 6)
    assert "accept+review" in result.stderr and "ECE 0.5500" in result.stderr


@pytest.mark.parametrize("line, message", [
    ("a60\tb60\t0.5", "expected 4 tab-separated columns"),
    ("a60\tb60\t1.5\taccept", "confidence must be a number in [0, 1], got '1.5'"),
    ("a60\tb60\thigh\taccept", "confidence must be a number in [0, 1]"),
    ("a60\tb60\t0.5\tmaybe", "unknown band 'maybe' (choose accept, review, reject)"),
    ("a50\tb51\t0.5\treview", "KG1 entity 'a50' listed twice (first on line 2)"),
    ("a60\t\t0.5\taccept", "an empty kg2_entity (no match) needs band reject"),
    ("nobody\tb60\t0.5\taccept", "unknown KG1 entity 'nobody'"),
])
def test_malformed_lines_name_file_and_line(workdir: Path, tmp_path: Path, line: str, message: str) -> None:  # noqa: F811
    result = evaluate(workdir, tmp_path, LINKS + line + "\n")
    assert result.exit_code == 2, result.output
    error = " ".join(result.stderr.split())
    assert f"links.tsv:9: {message}" in error and "Traceback" not in error


def test_many_allows_several_rows_per_entity(workdir: Path, tmp_path: Path) -> None:  # noqa: F811
    result = evaluate(workdir, tmp_path, LINKS + "a50\tb51\t0.5\treview\n", "--many", "--json")
    assert result.exit_code == 0, result.output
    bands = {group["band"]: group for group in json.loads(result.stdout)["bands"]}
    assert bands["review"]["links"] == 3 and bands["review"]["correct"] == 1


def test_ranking_options_do_not_mix_with_links(workdir: Path, tmp_path: Path) -> None:  # noqa: F811
    result = evaluate(workdir, tmp_path, LINKS, "--csls", "3")
    assert result.exit_code == 2 and "with --links" in result.stderr


def test_link_output_reads_back(workdir: Path, tmp_path: Path) -> None:  # noqa: F811
    written = CliRunner().invoke(app, ["link", "-w", str(workdir), "--all"]).stdout
    gold = "".join(f"a{i}\tb{i}\n" for i in range(50, 90))
    (tmp_path / "gold.tsv").write_text(gold)
    (tmp_path / "links.tsv").write_text(written)
    result = CliRunner().invoke(app, ["evaluate", "-w", str(workdir), "--links", str(tmp_path / "links.tsv"),
                                      "--gold", str(tmp_path / "gold.tsv"), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["entities"] == 70 and scored["links"] >= 60
    accept = scored["bands"][0]
    assert accept["band"] == "accept" and accept["precision"] >= 0.8
