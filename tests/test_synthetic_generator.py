"""benchmarks/synthetic.py: deterministic, ingestible, gold links that resolve, dangling
entities on both sides, heavy-tailed degrees, keys and names that do not give the match away."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mmalign.ingest import ingest
from mmalign.pairs import read_pairs

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("benchmarks_synthetic", ROOT / "benchmarks" / "synthetic.py")
synthetic = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = synthetic  # dataclasses look their module up by name
_spec.loader.exec_module(synthetic)

N = 1500


def make(root: Path, **settings) -> tuple[Path, dict]:
    """A generated pair under ``root`` (tiny unless told) and its synthetic.json counts."""
    config = synthetic.SyntheticConfig(**{"entities": N, **settings})
    counts = synthetic.write(synthetic.generate(config), config, root)
    assert json.loads((root / "synthetic.json").read_text())["counts"] == counts
    return root, counts


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def top_share(degrees: np.ndarray, share: float = 0.01) -> float:
    """The share of all triples held by the ``share`` of entities with the highest degrees."""
    ranked = np.sort(degrees)[::-1]
    return float(ranked[: max(1, int(len(ranked) * share))].sum() / ranked.sum())


@pytest.mark.parametrize("format", ["tsv", "nt"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, format: str) -> None:
    settings = {"format": format, "names": True, "attributes": 1.0}
    first, _ = make(tmp_path / "a", **settings)
    again, _ = make(tmp_path / "b", **settings)
    other, _ = make(tmp_path / "c", **settings, seed=1)
    assert files(first) == files(again)
    assert files(first)["links.tsv"] != files(other)["links.tsv"]


def test_graph_does_not_depend_on_names_or_attributes(tmp_path: Path) -> None:
    plain, _ = make(tmp_path / "plain")
    rich, _ = make(tmp_path / "rich", names=True, attributes=2.0)
    for name in ("kg1/triples.tsv", "kg2/triples.tsv", "links.tsv", "seeds.tsv", "test.tsv"):
        assert (plain / name).read_bytes() == (rich / name).read_bytes(), name


@pytest.mark.parametrize("format", ["tsv", "nt"])
def test_ingest_reads_what_was_written(tmp_path: Path, format: str) -> None:
    root, counts = make(tmp_path / "pair", format=format, names=True, attributes=1.0)
    workspace = ingest([root / "kg1", root / "kg2"], tmp_path / "work").workspace
    for name in ("kg1", "kg2"):
        expected, found = counts[name], workspace.manifest["counts"][name]
        assert found["entities"] == expected["entities"] == N
        assert found["relations"] == expected["relations"]
        assert found["relation_triples"] == expected["relation_triples"] > 4 * N
        assert found["names"] == expected["names"]
        labels = expected["names"] if format == "nt" else 0  # rdfs:label literals are attributes too
        assert found["attribute_triples"] == expected["attribute_triples"] + labels
        assert found["self_loops"] == found["duplicate_triples"] == 0
    kg1, kg2 = workspace.kg1, workspace.kg2
    assert kg1.entities[0].startswith("http://kg1.example.org/") and kg2.entities[0].startswith("http://kg2.example.net/")
    assert not set(kg1.relations) & set(kg2.relations)


def test_links_resolve_and_leave_dangling_entities_on_both_sides(tmp_path: Path) -> None:
    root, counts = make(tmp_path / "pair", dangling=0.2)
    workspace = ingest([root / "kg1", root / "kg2"], tmp_path / "work").workspace
    links = read_pairs(root / "links.tsv", workspace)  # an unknown key would raise
    seeds, test = read_pairs(root / "seeds.tsv", workspace), read_pairs(root / "test.tsv", workspace)
    assert len(links) == counts["links"] == N - round(N * 0.2)
    assert len(np.unique(links[:, 0])) == len(np.unique(links[:, 1])) == len(links)  # one-to-one
    assert len(seeds) == round(0.3 * len(links)) and len(seeds) + len(test) == len(links)
    both = {tuple(p) for p in seeds.tolist()} | {tuple(p) for p in test.tolist()}
    assert both == {tuple(p) for p in links.tolist()}
    for side in (0, 1):
        dangling = N - len(np.unique(links[:, side]))
        assert dangling == counts[f"kg{side + 1}"]["dangling"] == round(N * 0.2)


def test_degrees_are_heavy_tailed(tmp_path: Path) -> None:
    config = synthetic.SyntheticConfig(entities=3000)
    for kg in synthetic.generate(config).kgs:
        out_degree = np.bincount(kg.triples[:, 0], minlength=config.entities)
        assert 4.5 < out_degree.mean() < 5.5
        assert out_degree.max() > 15 * out_degree.mean()
        assert top_share(out_degree) > 0.08
    # the check fails on a graph of the same size whose heads are drawn uniformly
    uniform = np.bincount(np.random.default_rng(0).integers(0, config.entities, 5 * config.entities))
    assert top_share(uniform) < 0.04 and uniform.max() < 5 * uniform.mean()


def test_keys_do_not_reveal_the_match(tmp_path: Path) -> None:
    root, _ = make(tmp_path / "pair")
    numbers = [
        (int(a.rsplit("Q", 1)[1]), int(b.rsplit("m.", 1)[1], 16))
        for a, b in (line.split("\t") for line in (root / "links.tsv").read_text().splitlines())
    ]
    first, second = np.array(numbers).T
    assert np.mean(first == second) < 0.01
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.1


def test_names_are_noisy_copies(tmp_path: Path) -> None:
    def agreement(**settings) -> tuple[float, float]:
        """Share of gold pairs with the same name, and with a name on both sides."""
        root, _ = make(tmp_path / str(len(list(tmp_path.iterdir()))), names=True, **settings)
        names = [dict(line.split("\t") for line in (root / f"kg{k}" / "names.tsv").read_text().splitlines()) for k in (1, 2)]
        links = [line.split("\t") for line in (root / "links.tsv").read_text().splitlines()]
        named = [(names[0][a], names[1][b]) for a, b in links if a in names[0] and b in names[1]]
        return np.mean([x == y for x, y in named]), len(named) / len(links)

    assert agreement(missing_names=0.0, name_noise=0.0) == (1.0, 1.0)
    same, named = agreement()  # defaults: 10 % missing per side, each of three noises at 10 %
    assert 0.45 < same < 0.75 and 0.75 < named < 0.87  # about 0.9^6 and 0.9^2


def test_settings_are_checked() -> None:
    assert synthetic.parse_count("15k") == 15_000 and synthetic.parse_count("1M") == 10**6
    assert synthetic.parse_count("2.5m") == 2_500_000 and synthetic.parse_count("300") == 300
    with pytest.raises(ValueError):
        synthetic.parse_count("1.5")
    for bad in ({"dangling": 1.0}, {"keep": 1.5}, {"format": "ttl"}, {"entities": 1}, {"degree": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            synthetic.SyntheticConfig(**bad)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthetic.main([str(tmp_path / "out"), "--entities", "1k", "--format", "nt", "--names", "--seed", "3"])
    counts = json.loads(capsys.readouterr().out)
    assert counts["kg1"]["entities"] == 1000 and (tmp_path / "out" / "kg2" / "kg2.nt").is_file()
    assert json.loads((tmp_path / "out" / "synthetic.json").read_text())["config"]["seed"] == 3
    with pytest.raises(SystemExit):
        synthetic.main([str(tmp_path / "bad"), "--dangling", "2"])
    assert not (tmp_path / "bad").exists()
