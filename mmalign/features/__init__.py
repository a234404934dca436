"""Feature extraction: one module per modality, each a plug registered in ``base``."""
