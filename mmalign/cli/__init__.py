"""Command-line interface: thin wrappers that parse options, call the library and print.

Each sub-module registers its commands on the shared Typer ``app``.
"""

from mmalign.cli._app import app
from mmalign.cli import features, ingest, link, predict, train  # noqa: F401  (registers commands)

__all__ = ["app"]
