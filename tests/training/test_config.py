"""The one training configuration: defaults, checks, names, files and reloading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.model.config import Fusion, ModelConfig
from mmalign.training.config import SETTING_PATHS, TrainConfig, settings_file


def test_defaults_live_once_and_round_trip_through_json() -> None:
    config = TrainConfig()
    assert config.model == ModelConfig()  # the model's defaults are the configuration's
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    resolved = config.resolved()
    assert TrainConfig.from_dict(resolved.to_dict()) == resolved


def test_every_setting_has_one_name_and_a_dotted_path() -> None:
    assert SETTING_PATHS["dim"] == "model.dim" and SETTING_PATHS["start"] == "pseudo.start"
    assert TrainConfig.build({"dim": 64}) == TrainConfig.build({"model.dim": 64})
    assert len(set(SETTING_PATHS.values())) == len(SETTING_PATHS)


def test_values_are_coerced_to_their_types() -> None:
    config = TrainConfig.build({"dim": "64", "lr": "0.01", "iterative": "false", "fusion": "concat", "modalities": "relation,name",
                                "names_file": "null"})
    assert config.model.dim == 64 and config.schedule.lr == 0.01 and config.pseudo.iterative is False
    assert config.model.fusion is Fusion.CONCAT and config.features.modalities == ("relation", "name")
    assert config.features.names_file is None


@pytest.mark.parametrize("settings, message", [
    ({"dim": 0}, "--dim must be at least 1, got 0"),
    ({"dim": 1.5}, "dim must be a whole number"),
    ({"iterative": "maybe"}, "iterative must be true or false"),
    ({"lr": "fast"}, "lr must be a number"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"window": 5, "check_every": 10}, "--window must be at least 10"),
    ({"model": 3}, "unknown setting 'model'"),
])
def test_bad_values_are_user_errors(settings: dict, message: str) -> None:
    with pytest.raises(MMAlignError, match=message):
        TrainConfig.build(settings)


def test_the_variant_fills_only_what_is_unset() -> None:
    paper = TrainConfig.build({"variant": "paper"}).resolved()
    assert (paper.model.structure_branch, paper.model.joint_layer0, paper.features.relation_values) == (False, "fused", "binary")
    mixed = TrainConfig.build({"variant": "paper", "structure_branch": True}).resolved()
    assert mixed.model.structure_branch is True and mixed.model.joint_layer0 == "fused"


def test_config_files_nested_flat_or_a_runs_config_json(tmp_path: Path) -> None:
    nested, flat, run, legacy = (tmp_path / name for name in ("nested.json", "flat.json", "run.json", "legacy.json"))
    nested.write_text(json.dumps({"model": {"dim": 64}, "schedule": {"lr": 0.01}}))
    flat.write_text(json.dumps({"dim": 64, "schedule.lr": 0.01}))
    run.write_text(json.dumps({"config": TrainConfig.build({"dim": 64, "lr": 0.01}).to_dict(), "data": {}}))
    legacy.write_text(json.dumps({"dim": 64, "lr": 0.01, "il_start": 30}))  # an older --config file
    expected = TrainConfig.build({"dim": 64, "lr": 0.01})
    for path in (nested, flat, run):
        assert TrainConfig.build(settings_file(path)) == expected, path
    assert TrainConfig.build(settings_file(legacy)).pseudo.start == 30
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dimm": 64}))
    with pytest.raises(MMAlignError, match="unknown setting 'dimm'") as error:
        settings_file(bad)
    assert error.value.path == bad
    bad.write_text("{not json")
    with pytest.raises(MMAlignError, match="cannot read config"):
        settings_file(bad)
