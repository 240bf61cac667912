"""DP training: models built offline, curated rows to examples, one training loop under Opacus, a killable entry point.

Public API (heavy imports stay inside the submodules' functions: DAG files import ``pipelines`` at parse time):

- ``pipelines.train.spec``: ``TrainSpec`` (one run), ``TrainResult``, ``TrainError``.
- ``pipelines.train.trainer``: ``train(spec)`` -> ``TrainResult``, the entry point (one process, or every rank of a
  torchrun job: the world size decides), and ``fit``, the one loop both run.
- ``pipelines.train.session``: ``prepare(spec)`` -> ``Session`` (the model made private; for tools and tests).
- ``pipelines.train.checkpoint``: resumable checkpoints, ``spec_fingerprint``, ``clear_checkpoints``.
- ``pipelines.train.evaluate``: ``evaluate_model`` (the gate's baseline) and the per-epoch metrics.
- ``pipelines.train.batches``: examples to tensors, each task's forward pass and loss.
- ``pipelines.train.ddp``: the torchrun context and the per-rank Poisson loader (the loop is ``trainer.train``).
- ``pipelines.train.models``: ``build_base_model``, ``make_sample_series`` (loading: :mod:`pipelines.modeling`).
- ``pipelines.train.data``: ``classification_examples``, ``causal_lm_examples``, ``split_by_hash``, ``term_weights``.
- ``pipelines.train.config``: ``TrainingConfig`` (the ``training`` section), ``spec_from_config``.
"""
