"""mmalign: align two multi-modal knowledge graphs with LoginMEA."""

__version__ = "0.2.0"
