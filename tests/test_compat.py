"""The torchvision workaround lets timm import and build a model on this torch."""

from mmalign._compat import ensure_torchvision, import_timm


def test_timm_imports_and_builds_a_model() -> None:
    timm = import_timm()
    model = timm.create_model("test_resnet.r160_in1k", pretrained=False, num_classes=0)
    assert model.num_features > 0


def test_ensure_torchvision_is_idempotent() -> None:
    ensure_torchvision()
    ensure_torchvision()
    import torchvision.transforms  # noqa: F401
