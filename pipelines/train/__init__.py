"""DP training: models built offline, curated rows to examples, ``fit(spec)`` under Opacus, a killable entry point.

Public API (heavy imports stay inside the submodules' functions: DAG files import ``pipelines`` at parse time):

- ``pipelines.train.models``: ``build_base_model``, ``load_model`` -> ``LoadedModel``, ``make_sample_series``.
- ``pipelines.train.data``: ``classification_examples``, ``causal_lm_examples``, ``split_by_hash``, ``term_weights``.
- ``pipelines.train.trainer``: ``TrainSpec``, ``fit`` -> ``TrainResult`` (``prepare`` -> ``Session`` for tools and tests).
- ``pipelines.train.config``: ``TrainingConfig`` (the ``training`` section), ``training_config``, ``spec_from_config``.
"""
