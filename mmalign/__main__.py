"""``python -m mmalign``: the same CLI as the ``mmalign`` script."""

from mmalign.cli import app

app()
