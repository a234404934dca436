"""Image extraction: decoding, weights, extraction + cache, aggregation, the workspace step, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from samples import DIM, MODEL, make_workspace, sample_files, sample_weights, sample_workspace, settings
from PIL import Image
from safetensors.torch import load_file, save_file

from mmalign.device import resolve_device
from mmalign.errors import MMAlignError
from mmalign.extract import backbone, decode
from mmalign.extract import images as im
from mmalign.report import RecordingReporter
from mmalign.workspace import Workspace

pytestmark = pytest.mark.filterwarnings("ignore:Sparse:UserWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return sample_files(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def workspace(files: dict[str, Path], tmp_path: Path) -> Workspace:
    return sample_workspace(tmp_path / "work", files)


# --- decoding -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gray", "rgba", "palette", "cmyk", "rgb0"])
def test_every_mode_decodes_to_rgb(files: dict[str, Path], name: str) -> None:
    image = decode.load_rgb(files[name], 640)
    assert image.mode == "RGB" and image.size == (64, 48)


def test_transparency_is_composited_onto_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)
    assert decode.load_rgb(path, 640).getpixel((0, 0)) == (255, 255, 255)


def test_huge_images_are_downscaled_while_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (4000, 3000), (30, 60, 90)).save(path)
    image = decode.load_rgb(path, 600)
    assert image.size == (800, 600)


# --- weights --------------------------------------------------------------------------------


def test_weights_file_loads_back_exactly(weights_file: Path, tmp_path: Path) -> None:
    saved = load_file(str(weights_file))
    model = backbone.load_backbone(MODEL, backbone.resolve_weights(weights_file))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    # a PyTorch state dict with the classifier still in it (loaded with weights_only) works too
    pth = tmp_path / "full.pth"
    torch.save({**saved, "fc.weight": torch.zeros(1000, DIM), "fc.bias": torch.zeros(1000)}, pth)
    model = backbone.load_backbone(MODEL, backbone.resolve_weights(pth))
    assert torch.equal(model.state_dict()["conv1.0.weight"], saved["conv1.0.weight"])


def test_weights_tags() -> None:
    assert backbone.resolve_weights(None).tag == "hub"
    assert backbone.resolve_weights("random").slug == "random"


def test_random_weights_are_reproducible() -> None:
    one = backbone.load_backbone(MODEL, backbone.resolve_weights("random")).state_dict()
    two = backbone.load_backbone(MODEL, backbone.resolve_weights("random")).state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_no_pretrained_weights_offline_says_how_to_supply_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MMAlignError, match="no pretrained weights for .* offline.*--image-weights FILE"):
        backbone.load_backbone(MODEL, backbone.resolve_weights(None))


def test_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(MMAlignError, match="not found"):
        backbone.resolve_weights(tmp_path / "nope.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"conv1.0.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(MMAlignError, match="cannot load these weights into"):
        backbone.load_backbone(MODEL, backbone.resolve_weights(other))


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(MMAlignError, match="unknown timm model 'resnet5O'.*close matches: .*resnet50"):
        backbone.load_backbone("resnet5O", backbone.resolve_weights("random"))


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


# --- the workspace step: features file and manifest -----------------------------------------


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
