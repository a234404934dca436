"""Links: decisions with calibrated confidences (``mmalign link``) and their evaluation.

- :mod:`~mmalign.links.config`: ``LinkConfig``, bands and formats;
- :mod:`~mmalign.links.candidates`: decided candidates and their features;
- :mod:`~mmalign.links.calibration`: the fit on validation pairs, the unmatched share, the accept threshold;
- :mod:`~mmalign.links.linker`: ``link``, the run folder's ``links/calibration.json``;
- :mod:`~mmalign.links.formats`: TSV, N-Triples, the OAEI Alignment format;
- :mod:`~mmalign.links.linkfile` and :mod:`~mmalign.links.metrics`: a link file read back and scored.
"""

from mmalign.links.config import Band, LinkConfig, LinkFormat
from mmalign.links.linker import Links, link
from mmalign.links.metrics import evaluate_links

__all__ = ["Band", "LinkConfig", "LinkFormat", "Links", "evaluate_links", "link"]
