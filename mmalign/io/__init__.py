"""Readers: input files -> plain records (:class:`mmalign.io.records.KGRecords`).

One module per kind of input: ``rdf.py`` (N-Triples by hand, other syntaxes through rdflib),
``tsv.py`` (tab-separated files), ``benchmark.py`` (DBP15K/EVA and OpenEA folders),
``images.py`` (image folders) and ``folder.py`` (a KG folder mixing all of them). Readers
know nothing of the workspace layout.
"""
