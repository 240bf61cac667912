"""Auto-labelling: BERT-style labellers that predict a label and a confidence for each record.

- English: the frozen all-MiniLM-L6-v2 encoder (mean pooling) + a linear softmax head.
- Chinese: jieba words -> a WordPiece tokenizer trained here -> a small BERT trained from scratch.

:func:`train_labeller`, :meth:`Labeller.predict`, :meth:`Labeller.save` / :func:`load_labeller`,
:func:`evaluate`; :func:`train_from_sample` trains every labeller from the bundled data
(``python -m pipelines.label.cli train-sample``). torch/transformers load only when a labeller is
trained or loaded, never on import. What happens to the predictions is :mod:`pipelines.review`.
"""

from pipelines.label.config import LANGUAGES, LabellerConfig
from pipelines.label.model import Labeller, evaluate, load_labeller, score, train_labeller, training_digest
from pipelines.label.train import SampleTrainingConfig, quick_config, train_from_sample

__all__ = [
    "LANGUAGES", "Labeller", "LabellerConfig", "SampleTrainingConfig", "evaluate", "load_labeller", "quick_config",
    "score", "train_from_sample", "train_labeller", "training_digest",
]
