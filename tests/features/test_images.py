"""Image modality: decoding, weights, extraction + cache, aggregation, missing-image policies, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mmalign.device import resolve_device
from mmalign.errors import MMAlignError
from mmalign.features import images as im
from mmalign.features.config import FeatureConfig
from mmalign.features.base import REGISTRY, FeatureContext
from mmalign.report import RecordingReporter
from mmalign.workspace import KGData, Workspace

MODEL = "test_resnet.r160_in1k"  # 0.37M parameters, 96-d pooled features, 160 px input
DIM = 96


def _pattern(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


pytestmark = pytest.mark.filterwarnings("ignore:Sparse:UserWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Images of every kind the extractor must cope with, made with pillow."""
    folder = tmp_path_factory.mktemp("images")
    out: dict[str, Path] = {}
    for i in range(4):
        out[f"rgb{i}"] = folder / f"rgb{i}.jpg"
        _pattern(i).save(out[f"rgb{i}"], quality=95)
    out["copy0"] = folder / "copy-of-rgb0.jpg"  # same bytes, other name: computed once
    out["copy0"].write_bytes(out["rgb0"].read_bytes())
    out["gray"] = folder / "gray.png"
    _pattern(10).convert("L").save(out["gray"])
    out["rgba"] = folder / "rgba.png"
    rgba = _pattern(11).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(out["rgba"])
    out["palette"] = folder / "palette.png"
    _pattern(12).convert("P").save(out["palette"], transparency=0)
    out["cmyk"] = folder / "cmyk.jpg"
    _pattern(13).convert("CMYK").save(out["cmyk"])
    out["corrupt"] = folder / "corrupt.jpg"
    out["corrupt"].write_bytes(b"this is not an image at all")
    out["truncated"] = folder / "truncated.jpg"
    data = out["rgb1"].read_bytes()
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["missing"] = folder / "does-not-exist.png"
    return out


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local checkpoint (seed 123, so unlike the 'random' weights) saved the way a user would."""
    timm = __import__("mmalign._compat", fromlist=["import_timm"]).import_timm()
    torch.manual_seed(123)
    model = timm.create_model(MODEL, pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("weights") / "backbone.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def settings(weights: Path | str, **kwargs: Any) -> im.ImageSettings:
    return im.ImageSettings(MODEL, weights=str(weights), **{"batch_size": 4, "num_workers": 0, **kwargs})


# --- decoding -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gray", "rgba", "palette", "cmyk", "rgb0"])
def test_every_mode_decodes_to_rgb(files: dict[str, Path], name: str) -> None:
    image = im.load_rgb(files[name], 640)
    assert image.mode == "RGB" and image.size == (64, 48)


def test_transparency_is_composited_onto_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)
    assert im.load_rgb(path, 640).getpixel((0, 0)) == (255, 255, 255)


def test_huge_images_are_downscaled_while_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (4000, 3000), (30, 60, 90)).save(path)
    image = im.load_rgb(path, 600)
    assert image.size == (800, 600)


# --- weights --------------------------------------------------------------------------------


def test_weights_file_loads_back_exactly(weights_file: Path, tmp_path: Path) -> None:
    saved = load_file(str(weights_file))
    model = im.load_backbone(MODEL, im.resolve_weights(weights_file))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    # a PyTorch state dict with the classifier still in it (loaded with weights_only) works too
    pth = tmp_path / "full.pth"
    torch.save({**saved, "fc.weight": torch.zeros(1000, DIM), "fc.bias": torch.zeros(1000)}, pth)
    model = im.load_backbone(MODEL, im.resolve_weights(pth))
    assert torch.equal(model.state_dict()["conv1.0.weight"], saved["conv1.0.weight"])


def test_weights_tags() -> None:
    assert im.resolve_weights(None).tag == "hub"
    assert im.resolve_weights("random").slug == "random"


def test_random_weights_are_reproducible() -> None:
    one = im.load_backbone(MODEL, im.resolve_weights("random")).state_dict()
    two = im.load_backbone(MODEL, im.resolve_weights("random")).state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_no_pretrained_weights_offline_says_how_to_supply_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MMAlignError, match="no pretrained weights for .* offline.*--image-weights FILE"):
        im.load_backbone(MODEL, im.resolve_weights(None))


def test_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(MMAlignError, match="not found"):
        im.resolve_weights(tmp_path / "nope.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"conv1.0.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(MMAlignError, match="cannot load these weights into"):
        im.load_backbone(MODEL, im.resolve_weights(other))


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(MMAlignError, match="unknown timm model 'resnet5O'.*close matches: .*resnet50"):
        im.load_backbone("resnet5O", im.resolve_weights("random"))


def test_gpu_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MMAlignError, match="--gpu 0: .*leave out --gpu"):
        resolve_device(0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(MMAlignError, match="--gpu 2: only 2 CUDA device"):
        resolve_device(2)
    assert resolve_device(1) == torch.device("cuda:1")


# --- extraction and cache -------------------------------------------------------------------


def test_extraction_shapes_failures_cache_and_determinism(
    files: dict[str, Path], weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = list(files.values())
    reporter = RecordingReporter()
    first = im.extract_image_features(
        paths, settings(weights_file, num_workers=2), cache_root=tmp_path, reporter=reporter
    )
    readable = len(files) - 3 - 1  # corrupt, truncated, missing; the copy shares rgb0's row
    assert first.matrix.shape == (readable, DIM) and first.dim == DIM
    assert (first.computed, first.cached) == (readable, 0)
    assert first.row_of_path[str(files["copy0"])] == first.row_of_path[str(files["rgb0"])]
    assert sorted(Path(p).name for p, _ in first.failed) == ["corrupt.jpg", "does-not-exist.png", "truncated.jpg"]
    assert len(reporter.warnings) == 1 and reporter.warnings[0].startswith(f"3 of {len(files)} image files")
    assert first.weights.tag.startswith("file:") and len(list(tmp_path.glob("*/shard-*.safetensors"))) == 1

    # same inputs, no cache, other batching and no workers: the same features
    again = im.extract_image_features(paths, settings(weights_file, batch_size=3))
    assert torch.allclose(again.matrix, first.matrix, atol=1e-5)
    same = im.extract_image_features(paths, settings(weights_file, num_workers=2))
    assert torch.equal(same.matrix, first.matrix)

    # re-run with the cache: nothing computed, the model is never even built
    monkeypatch.setattr(im, "load_backbone", lambda *a: pytest.fail("model built for cached images"))
    cached = im.extract_image_features(paths, settings(weights_file), cache_root=tmp_path)
    assert (cached.computed, cached.cached) == (0, readable)
    assert torch.equal(cached.matrix, first.matrix) and cached.row_of_path == first.row_of_path
    assert sorted(cached.failed) == sorted(first.failed)  # decode failures are remembered too


def test_other_weights_use_another_cache(files: dict[str, Path], weights_file: Path, tmp_path: Path) -> None:
    paths = [files["rgb0"], files["rgb1"]]
    trained = im.extract_image_features(paths, settings(weights_file), cache_root=tmp_path)
    random = im.extract_image_features(paths, settings("random"), cache_root=tmp_path)
    assert random.computed == 2 and not torch.allclose(random.matrix, trained.matrix)
    assert sorted(p.name.split("-")[-1] for p in tmp_path.iterdir())[-1] == "random"


def test_aggregation_mean_and_first(files: dict[str, Path], weights_file: Path) -> None:
    entity_images = {
        0: [str(files["rgb0"]), str(files["rgb1"]), str(files["rgb2"])],  # three images
        1: [str(files["corrupt"]), str(files["gray"])],  # first readable one is the second
        2: [str(files["corrupt"])],  # nothing readable: missing
    }
    paths = [p for ps in entity_images.values() for p in ps]
    feats = im.extract_image_features(paths, settings(weights_file))
    rows = {name: feats.matrix[feats.row_of_path[str(files[name])]] for name in ("rgb0", "rgb1", "rgb2", "gray")}
    mean, present = im.aggregate_entities(entity_images, 4, feats, "mean")
    assert mean.shape == (4, DIM) and present.tolist() == [True, True, False, False]
    assert torch.allclose(mean[0], (rows["rgb0"] + rows["rgb1"] + rows["rgb2"]) / 3)
    assert torch.equal(mean[1], rows["gray"]) and not mean[2:].any()
    first, _ = im.aggregate_entities(entity_images, 4, feats, "first")
    assert torch.equal(first[0], rows["rgb0"])


# --- workspace, manifest and the modality builder -------------------------------------------


def make_workspace(path: Path, kg1_images: dict[int, list[str]], kg2_images: dict[int, list[str]], n: int = 4) -> Workspace:
    """A real workspace of two n-entity KGs with the given images (one triple each: 0 r 1)."""

    def kg(prefix: str, images: dict[int, list[str]]) -> KGData:
        return KGData(
            entities=[f"{prefix}{i}" for i in range(n)],
            relations=["r"],
            attributes=[],
            triples=np.array([[0, 0, 1]], dtype=np.int32),
            attr_triples=np.zeros((0, 2), dtype=np.int32),
            attr_values=[],
            attr_datatypes=[],
            images=images,
        )

    Workspace.create(path, kg("a", kg1_images), kg("b", kg2_images), [], {})
    return Workspace.open(path)


@pytest.fixture()
def workspace(files: dict[str, Path], tmp_path: Path) -> Workspace:
    kg1 = {0: [str(files["rgb0"])], 1: [str(files["rgb1"]), str(files["rgb2"])], 3: [str(files["corrupt"])]}
    kg2 = {0: [str(files["copy0"])], 2: [str(files["gray"])]}
    return make_workspace(tmp_path / "work", kg1, kg2)


def test_workspace_extraction_writes_file_and_manifest(workspace: Workspace, weights_file: Path) -> None:
    entry = im.extract_workspace_images(workspace, settings(weights_file))
    assert Workspace.open(workspace.path).manifest["features"]["images"] == entry
    assert entry["file"].startswith("features/images-test_resnet.r160_in1k-file-")
    assert entry["weights"].startswith("file:") and (entry["dim"], entry["dtype"]) == (DIM, "float16")
    assert entry["counts"]["images"] == {"ok": 5, "failed": 1, "cached": 0, "computed": 4}
    assert entry["counts"]["entities_with_images"] == {"kg1": 2, "kg2": 2}
    tensors = load_file(str(workspace.path / entry["file"]))
    assert tensors["kg1"].shape == (4, DIM) and tensors["kg1"].dtype == torch.float16
    assert tensors["kg1_present"].tolist() == [1, 1, 0, 0] and tensors["kg2_present"].tolist() == [1, 0, 1, 0]
    assert torch.equal(tensors["kg1"][0], tensors["kg2"][0])  # same image content, same feature

    wide = im.extract_workspace_images(workspace, settings("random", dtype="float32"))
    assert wide["counts"]["images"]["computed"] == 4 and wide["file"].endswith("-random.safetensors")
    assert load_file(str(workspace.path / wide["file"]))["kg2"].dtype == torch.float32
    assert Workspace.open(workspace.path).manifest["features"]["images"] == wide  # the latest is active


def test_workspace_without_images_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MMAlignError, match="no entity in this workspace has an image"):
        im.extract_workspace_images(make_workspace(tmp_path / "work", {}, {}), settings("random"))


def test_builder_fills_missing_and_normalises(workspace: Workspace, weights_file: Path) -> None:
    build = REGISTRY["image"]
    assert build(FeatureContext(workspace, FeatureConfig())) is None  # nothing extracted yet
    im.extract_workspace_images(workspace, settings(weights_file))
    # kg1 entity 2 neighbours kg1 0 (twice) and kg1 1; entity 3 and kg2 1, 3 have no imaged neighbour
    neighbors = torch.sparse_coo_tensor(
        torch.tensor([[2, 0, 2, 1], [0, 2, 1, 2]]), torch.tensor([2.0, 2.0, 1.0, 1.0]), (8, 8)
    ).to_sparse_csr()
    feats = build(FeatureContext(workspace, FeatureConfig(), seed=3, neighbors=neighbors))
    raw = load_file(str(workspace.path / workspace.manifest["features"]["images"]["file"]))
    assert feats is not None and feats.matrix.shape == (8, DIM) and feats.matrix.dtype == torch.float32
    assert feats.present.tolist() == [True, True, False, False, True, False, True, False]
    assert torch.allclose(feats.matrix.norm(dim=1), torch.ones(8))
    expected = (2 * raw["kg1"][0].float() + raw["kg1"][1].float()) / 3
    assert torch.allclose(feats.matrix[2], expected / expected.norm(), atol=1e-6)
    assert torch.equal(feats.matrix[3], feats.matrix[5]) and torch.equal(feats.matrix[3], feats.matrix[7])
    assert feats.info["fallback"] == {"neighbor_mean": 1, "random": 3, "zeros": 0}
    assert feats.info["present"] == {"kg1": 2, "kg2": 2} and feats.info["dim"] == DIM
    again = build(FeatureContext(workspace, FeatureConfig(), seed=3, neighbors=neighbors))
    assert torch.equal(again.matrix, feats.matrix)  # seeded

    workspace.kg2.entities = ["x", "y", "z", "w"]  # as if re-ingested with other entities
    with pytest.raises(MMAlignError, match="extracted for other kg2 entities"):
        build(FeatureContext(workspace, FeatureConfig()))


def test_missing_image_policies() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 6.0], [0.0, 0.0], [0.0, 0.0]])
    present = torch.tensor([True, True, False, False])
    out, counts = im.fill_missing(features, present, "zeros")
    assert torch.equal(out, features) and counts["zeros"] == 2
    out, counts = im.fill_missing(features, present, "random_per_entity", seed=1)
    assert not torch.equal(out[2], out[3]) and counts["random"] == 2 and torch.equal(out[:2], features[:2])
    out, counts = im.fill_missing(features, present, "neighbor_mean", neighbors=None, seed=1)
    assert torch.equal(out[2], out[3]) and counts == {"neighbor_mean": 0, "random": 2, "zeros": 0}
    with pytest.raises(MMAlignError, match="missing_image must be one of"):
        im.fill_missing(features, present, "average")


# --- CLI ------------------------------------------------------------------------------------


def invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from mmalign.cli import features  # noqa: F401  (registers the sub-app)
    from mmalign.cli._app import app

    return CliRunner().invoke(app, ["features", "images", *args])


def test_cli_extracts_into_the_workspace(workspace: Workspace, weights_file: Path) -> None:
    args = ["-w", str(workspace.path), "--image-model", MODEL, "--image-weights", str(weights_file)]
    result = invoke(*args, "--image-workers", "0", "--image-dtype", "float32", "--image-aggregate", "first")
    assert result.exit_code == 0, result.output
    entry = Workspace.open(workspace.path).manifest["features"]["images"]
    assert (entry["dtype"], entry["aggregate"], entry["counts"]["images"]["failed"]) == ("float32", "first", 1)
    assert "1 of 6 image files could not be read" in result.output


def test_cli_user_errors_exit_2(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU-only machine
    for args, message in [
        (["-w", str(workspace.path), "--gpu", "0"], "--gpu 0:"),
        (["-w", str(tmp_path / "nowhere")], "no workspace here"),
        (["-w", str(workspace.path), "--image-weights", str(tmp_path / "w.pt")], "weights file not found"),
    ]:
        result = invoke(*args, "--image-model", MODEL)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


# --- end to end -----------------------------------------------------------------------------


def _star_kg(folder: Path, n: int, kg_seed: int) -> None:
    """A hub linked to n leaves, all alike; leaf i's image is pattern i with this KG's own noise."""
    (folder / "images").mkdir(parents=True)
    (folder / "triples.tsv").write_text("".join(f"hub\tlinks\te{i}\n" for i in range(n)))
    noise = np.random.default_rng(kg_seed)
    for i in range(n):
        grid = np.random.default_rng(1000 + i).integers(0, 256, (4, 4, 3)).repeat(16, 0).repeat(16, 1)
        pixels = np.clip(grid + noise.normal(0, 8, grid.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"e{i}.jpg", quality=90)


def test_images_align_entities_that_structure_cannot_tell_apart(tmp_path: Path) -> None:
    """Two star KGs: every leaf has the same structure, only its image tells it apart.

    Without images the leaves' embeddings differ only by their untrained entity vectors, so
    test H@1 is about chance (1/15); with images it is near 1 (0.87-1.0 over seeds 0-2).
    """
    from mmalign.ingest import ingest
    from mmalign.training import TrainConfig, train

    n = 40
    _star_kg(tmp_path / "kg1", n, kg_seed=1)
    _star_kg(tmp_path / "kg2", n, kg_seed=2)
    work = tmp_path / "work"
    ingest([tmp_path / "kg1", tmp_path / "kg2"], work)
    entry = im.extract_workspace_images(work, settings("random"))
    assert entry["counts"]["entities_with_images"] == {"kg1": n, "kg2": n}

    def pairs(name: str, ids: range, extra: str = "") -> Path:
        path = tmp_path / name
        path.write_text("".join(f"e{i}\te{i}\n" for i in ids) + extra)
        return path

    seeds = pairs("seeds.tsv", range(0, 15), extra="hub\thub\n")
    valid, test = pairs("valid.tsv", range(15, 25)), pairs("test.tsv", range(25, n))
    hits = {}
    for modalities in (["relation", "attribute"], ["relation", "attribute", "image"]):
        options = TrainConfig.build(dict(
            epochs=20, lr=5e-3, eval_every=10, min_epochs=0, iterative=False, dim=32, modal_dim=32,
            precision="fp32", seed=0, modalities=modalities, members=1,
        ))
        result = train(work, seeds, options, valid=valid, test=test)
        assert ("image" in result.modalities) == ("image" in modalities)
        hits[modalities[-1]] = result.test["hits@1"]
    assert hits["image"] >= 0.7 and hits["image"] >= hits["attribute"] + 0.5, hits


def test_ingest_with_image_model_extracts_features(tmp_path: Path) -> None:
    """`mmalign ingest --image-model` runs the same extraction as `mmalign features images`."""
    from PIL import Image
    from typer.testing import CliRunner

    from mmalign.cli import app
    from mmalign.workspace import Workspace

    for kg, prefix in (("kg1", "a"), ("kg2", "b")):
        folder = tmp_path / kg
        (folder / "images").mkdir(parents=True)
        (folder / "triples.tsv").write_text(f"{prefix}1\tr\t{prefix}2\n")
        Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "images" / f"{prefix}1.png")
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "kg1"), str(tmp_path / "kg2"), "-w", str(work),
                                      "--image-model", "test_resnet.r160_in1k", "--image-weights", "random", "-q"])
    assert result.exit_code == 0, result.output
    entry = Workspace.open(work).manifest["features"]["images"]
    assert entry["model"] == "test_resnet.r160_in1k" and entry["weights"] == "random"
