"""Modality builders: one module per modality, each a plug registered in ``base``.

Builders run at train time and only read the workspace; the expensive encoders that write
its feature caches are in :mod:`mmalign.extract`. Importing this package registers every
built-in modality; ``REGISTERED_MODALITIES`` is the default order of fusion.
"""

from mmalign.features import bags, images, names  # noqa: F401  (register relation, attribute, image, name)
from mmalign.features.base import REGISTRY

REGISTERED_MODALITIES = tuple(REGISTRY)
