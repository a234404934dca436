"""Readers: input files -> a streaming :class:`mmalign.io.records.KGBuilder` per KG.

One module per kind of input: ``rdf.py`` (every RDF syntax, through pyoxigraph),
``tsv.py`` (tab-separated files), ``benchmark.py`` (DBP15K/EVA and OpenEA folders),
``images.py`` (image folders) and ``folder.py`` (a KG folder mixing all of them). Readers
know nothing of the workspace layout.
"""
