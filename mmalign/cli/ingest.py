"""CLI commands (filled in by its issue)."""

from mmalign.cli._app import app  # noqa: F401
