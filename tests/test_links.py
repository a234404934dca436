"""``mmalign link`` on a fabricated run with entities that have no counterpart, and a short trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyoxigraph
import pytest
import torch
from typer.testing import CliRunner

from mmalign.atomic import atomic_write_json
from mmalign.cli import app
from mmalign.errors import MMAlignError
from mmalign.ingest import ingest
from mmalign.links import LinkConfig, LinkFormat, link
from mmalign.links.formats import ALIGNMENT_NS, SAME_AS, XSD_FLOAT, render
from mmalign.links.linker import calibration_file
from mmalign.links.prior import PairShape
from mmalign.pairs import write_pairs
from mmalign.report import RecordingReporter
from mmalign.run import atomic_save_tensors, new_run, pairs_file
from mmalign.training import TrainConfig
from test_predict import kg_folder, tiny_trained_run

N, MATCHED = 120, 90
TRAIN, VALID = range(0, 20), range(20, 50)
NON_SEEDS = [f"a{i}" for i in range(50, N)]
TWIN = (60, 91)  # the unmatched a91 embeds exactly as a60 does: both want b60


def make_run(root: Path) -> Path:
    """a_i ↔ b_i for i < 90 with noise growing with i; a90.. and b90.. have no counterpart."""
    work = root / "work"
    ws = ingest([kg_folder(root / "kg1", "a", N), kg_folder(root / "kg2", "b", N)], work).workspace
    g = torch.Generator().manual_seed(0)
    base = torch.randn(N, 16, generator=g)
    noise = torch.linspace(0.1, 0.9, N)[:, None]
    kg1, kg2 = base + noise * torch.randn(N, 16, generator=g), base + noise * torch.randn(N, 16, generator=g)
    kg1[MATCHED:], kg2[MATCHED:] = torch.randn(N - MATCHED, 16, generator=g), torch.randn(N - MATCHED, 16, generator=g)
    kg1[TWIN[1]] = kg1[TWIN[0]]
    run = new_run(work)
    atomic_write_json(run / "config.json", {"config": TrainConfig.build({"csls": 3}).to_dict(), "data": ws.manifest["sources"]})
    atomic_save_tensors(run / "embeddings.safetensors", {"kg1": torch.nn.functional.normalize(kg1, dim=1),
                                                         "kg2": torch.nn.functional.normalize(kg2, dim=1)})
    for split, ids in (("train", TRAIN), ("valid", VALID)):
        write_pairs(pairs_file(run, split), np.array([(i, i) for i in ids]), ws)
    return work


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("links"))


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def table(text: str) -> list[list[str]]:
    lines = text.splitlines()
    assert lines[0] == "kg1_entity\tkg2_entity\tconfidence\tband"
    return [line.split("\t") for line in lines[1:]]


def test_link_decides_every_non_seed_entity_one_to_one(workdir: Path) -> None:
    reporter = RecordingReporter()
    links = link(workdir, None, LinkConfig(include_rejected=True), reporter)
    rows = table("".join(render(links, LinkConfig(include_rejected=True))))
    assert [r[0] for r in rows] == NON_SEEDS
    targets = [r[1] for r in rows if r[1]]
    assert len(targets) == len(set(targets))  # one-to-one
    assert not {r[1] for r in rows} & {f"b{i}" for i in (*TRAIN, *VALID)}
    saved = json.loads(calibration_file(workdir / "runs" / "latest").read_text())
    accept = saved["accept"]
    assert 0 < accept <= 1 and saved["validation"]["entities"] == len(VALID)
    assert saved["validation"]["accept_precision"] >= 0.95
    for _, kg2, confidence, band in rows:
        assert band == ("accept" if float(confidence) >= accept else "review" if float(confidence) >= 0.5 else "reject")
        assert kg2 or band == "reject"
    accepted = [(a, b) for a, b, _, band in rows if band == "accept"]
    assert sum(a[1:] == b[1:] for a, b in accepted) >= 0.9 * len(accepted) > 10
    log = " ".join(reporter.infos)
    assert "without a counterpart" in log and "accept threshold" in log
    share = saved["population"]["estimated_unmatched"]
    assert 0.2 < share < 0.7  # 30 of the 70 non-seed KG1 entities have no counterpart


def test_calibration_is_kept_and_read_back(workdir: Path) -> None:
    first = "".join(render(link(workdir, None, LinkConfig()), LinkConfig()))
    path = calibration_file(workdir / "runs" / "latest")
    saved = json.loads(path.read_text())
    reporter = RecordingReporter()
    assert "".join(render(link(workdir, None, LinkConfig(), reporter), LinkConfig())) == first
    assert any("fitted earlier" in message for message in reporter.infos)
    saved["accept"] = 0.999999
    atomic_write_json(path, saved)
    assert all(r[3] != "accept" or float(r[2]) >= 0.999999 for r in table("".join(render(link(workdir, None, LinkConfig()), LinkConfig()))))
    path.unlink()


def test_cli_bands_follow_the_thresholds_given(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "links.tsv"
    result = invoke("link", "-w", workdir, "--accept", "0.8", "--review", "0.3", "--all", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = table(out.read_text())
    assert {r[3] for r in rows} == {"accept", "review", "reject"}
    for _, _, confidence, band in rows:
        assert band == ("accept" if float(confidence) >= 0.8 else "review" if float(confidence) >= 0.3 else "reject")
    default = table(invoke("link", "-w", workdir, "--accept", "0.8", "--review", "0.3").stdout)
    assert default == [r for r in rows if r[3] != "reject"]


def test_many_lets_kg1_entities_share_a_kg2_entity(workdir: Path) -> None:
    twins = {f"a{i}" for i in TWIN}
    for many in (False, True):
        config = LinkConfig(many=many, include_rejected=True)
        rows = table("".join(render(link(workdir, None, config), config)))
        targets = {r[1] for r in rows if r[0] in twins}
        assert targets == {f"b{TWIN[0]}"} if many else len(targets) == 2


def parse(text: str, format: pyoxigraph.RdfFormat) -> list[pyoxigraph.Triple]:
    return [quad.triple for quad in pyoxigraph.parse(text.encode(), format=format)]


def test_ntriples_need_iris_and_parse_back(workdir: Path) -> None:
    result = invoke("link", "-w", workdir, "--format", "nt")
    assert result.exit_code == 2 and "'a" in result.stderr and "--base-iri" in result.stderr and result.stdout == ""
    result = invoke("link", "-w", workdir, "--format", "nt", "--base-iri", "http://example.org/e/")
    assert result.exit_code == 0, result.output
    accepted = [r for r in table(invoke("link", "-w", workdir).stdout) if r[3] == "accept"]
    triples = parse(result.stdout, pyoxigraph.RdfFormat.N_TRIPLES)
    assert [(t.subject.value, t.predicate.value, t.object.value) for t in triples] == [
        (f"http://example.org/e/{a}", SAME_AS, f"http://example.org/e/{b}") for a, b, _, _ in accepted
    ]


def test_alignment_format_parses_back(workdir: Path) -> None:
    result = invoke("link", "-w", workdir, "--format", "alignment", "--base-iri", "http://example.org/e/", "--review", "0.2")
    assert result.exit_code == 0, result.output
    written = [r for r in table(invoke("link", "-w", workdir, "--review", "0.2").stdout)]
    triples = parse(result.stdout, pyoxigraph.RdfFormat.RDF_XML)
    align = lambda name: pyoxigraph.NamedNode(ALIGNMENT_NS + name)  # noqa: E731
    (alignment,) = [t.subject for t in triples if t.predicate == align("level")]
    about = {t.predicate: t.object for t in triples if t.subject == alignment}
    assert about[align("xml")].value == "yes" and about[align("level")].value == "0" and about[align("type")].value == "??"
    assert about[align("onto1")] != about[align("onto2")]
    cells = {}
    for t in triples:
        if t.predicate in (align("entity1"), align("entity2"), align("relation"), align("measure")):
            cells.setdefault(t.subject, {})[t.predicate.value[len(ALIGNMENT_NS):]] = t.object
    assert len([t for t in triples if t.subject == alignment and t.predicate == align("map")]) == len(written) == len(cells)
    got = sorted((c["entity1"].value, c["entity2"].value, c["relation"].value, c["measure"].value, c["measure"].datatype.value)
                 for c in cells.values())
    base = "http://example.org/e/"
    assert got == sorted((base + a, base + b, "=", confidence, XSD_FLOAT) for a, b, confidence, _ in written)


def test_run_without_validation_pairs_says_what_it_needs(workdir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(workdir / "runs" / "latest", run)
    (run / "pairs" / "valid.tsv").unlink()
    result = invoke("link", "-w", workdir, "--run", run)
    assert result.exit_code == 2
    assert "no validation pairs" in result.stderr and "--valid" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--accept", "1.5"], "--accept must be a probability"),
    (["--accept", "0.4", "--review", "0.6"], "must not exceed --accept"),
    (["--format", "xml"], "xml"),
    (["--format", "nt", "--all"], "TSV format only"),
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--base-iri", "not an iri"], "--base-iri"),
])
def test_wrong_option_values_are_one_line_and_exit_2(workdir: Path, args: list[str], message: str) -> None:
    result = invoke("link", "-w", workdir, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr and result.stdout == ""


def test_library_refuses_a_bad_config() -> None:
    with pytest.raises(MMAlignError, match="unknown link format"):
        LinkConfig(format="xml")
    assert LinkConfig(format="nt").format is LinkFormat.NT


def test_link_on_a_tiny_trained_run(tmp_path: Path) -> None:
    pair, work, _ = tiny_trained_run(tmp_path, valid_fraction=0.3)
    result = invoke("link", "-w", work, "--all", "-q")
    assert result.exit_code == 0, result.output
    rows = table(result.stdout)
    assert len(rows) == 80 - len(pair.seeds.read_text().splitlines())
    assert all(0 <= float(r[2]) <= 1 for r in rows)


def test_the_scale_recovers_the_unmatched_share() -> None:
    """Matched and unmatched features from two Gaussians; the population is 30% unmatched."""
    from mmalign.links.calibration import fit

    rng = np.random.default_rng(0)
    matched, unmatched = rng.normal(1.0, 1.0, (400, 4)), rng.normal(-1.0, 1.0, (400, 4))
    population = np.vstack([rng.normal(1.0, 1.0, (1400, 4)), rng.normal(-1.0, 1.0, (600, 4))])
    calibrator, _ = fit(matched, rng.random(400) < 0.9, unmatched, population, PairShape.uniform(), np.ones(2000))
    assert calibrator.fit_unmatched == 0.5
    assert abs(calibrator.unmatched(1.0) - 0.3) < 0.03
    assert abs(calibrator.correct.probability(matched).mean() - 0.9) < 0.03  # calibrated in the large


def test_the_scale_follows_the_shape_where_features_cannot_tell() -> None:
    """Features that look matched for everyone; the shape puts the unmatched at low degrees."""
    from mmalign.links.calibration import fit

    rng = np.random.default_rng(1)
    matched, unmatched = rng.normal(1.0, 1.0, (400, 4)), rng.normal(-1.0, 1.0, (400, 4))
    population = rng.normal(1.0, 1.0, (2000, 4))
    h = np.r_[np.full(1500, 1.0), np.full(500, 0.1)]
    calibrator, _ = fit(matched, rng.random(400) < 0.9, unmatched, population, PairShape.uniform(), h)
    assert calibrator.scale > 0.95
    assert calibrator.unmatched(0.1) > 0.85 and calibrator.unmatched(1.0) < 0.05


def test_keys_become_iris_only_with_a_base() -> None:
    from mmalign.links.formats import iri

    assert iri("http://zh.dbpedia.org/resource/金大中", "KG1", None) == "http://zh.dbpedia.org/resource/金大中"
    assert iri("/m/027rn", "KG2", "http://rdf.freebase.com/ns") == "http://rdf.freebase.com/ns/m/027rn"
    assert iri("a b<c>", "KG1", "http://example.org/") == "http://example.org/a%20b%3Cc%3E"
    with pytest.raises(MMAlignError, match="KG2 entity '/m/027rn' is not an absolute IRI"):
        iri("/m/027rn", "KG2", None)


def test_a_perfect_validation_set_gives_no_certainty() -> None:
    from mmalign.links.calibration import Logistic, platt_targets

    x = np.random.default_rng(1).normal(size=(50, 4))
    p = Logistic.fit(x, platt_targets(np.ones(50, dtype=bool))).probability(x)
    assert np.allclose(p, 51 / 52, atol=1e-3)
