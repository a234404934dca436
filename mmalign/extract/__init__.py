"""Ingest-time encoders: the expensive models that turn workspace data into feature caches.

Each step (``mmalign ingest --image-model``, ``mmalign features images``, ``mmalign features
names``) runs a model once, writes its result under the workspace's ``features/`` folder and
records it in the manifest. Training never writes there: the modality builders in
:mod:`mmalign.features` only read what these steps left.
"""
