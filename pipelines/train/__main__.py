"""``python -m pipelines.train --spec spec.json``: one DP training run, killable and resumable.

The spec is a JSON object of :class:`pipelines.train.spec.TrainSpec` fields (examples usually as
``train_path`` / ``eval_path`` JSONL files). Progress goes to stderr; the TrainResult is printed to
stdout as JSON. Killed at any point, the same command continues from the last epoch checkpoint.
"""

from __future__ import annotations

import sys

from pipelines.train.cli import run_main

if __name__ == "__main__":
    raise SystemExit(run_main(sys.argv[1:]))
