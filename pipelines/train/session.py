"""A run made private and ready to step: ``prepare(spec) -> Session`` (Opacus hooks/ghost, or book-keeping
clipping with ``grad_sample_mode=\"bk\"``, optionally LoRA).
"""

from __future__ import annotations

import math
import random
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.modeling import LoadedModel, ModelFolderError, load_model
from pipelines.train.batches import encode_examples, forward, load_examples, loss_module, lr_lambda, resolve_device, trim_batch
from pipelines.train.data import DataError
from pipelines.train.evaluate import evaluate_session
from pipelines.train.private import Private, make_private_bk, make_private_distributed
from pipelines.train.spec import METRICS, TrainError, TrainSpec

_LORA_TARGETS = {"classification": ["query", "value"], "causal_lm": ["q_proj", "v_proj"]}


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)



@dataclass
class Session:
    """A model made private and ready to train: what :func:`fit` drives, exposed for tests and tools.

    Attributes:
        spec: the run's spec.
        loaded: the start model as loaded (its tokenizer and descriptor are saved with the result).
        model: the Opacus-wrapped module (the plain module in bk mode).
        optimizer: the DPOptimizer (the plain optimizer in bk mode: the clipper privatises its gradients).
        criterion: the loss (Opacus' wrapper in ghost mode).
        loader: the (Poisson) training data loader.
        scheduler: learning-rate schedule over all epochs.
        engine: the PrivacyEngine (its accountant holds the spend so far; in bk mode the trainer steps it).
        sample_rate / noise_multiplier / steps_per_epoch: as used.
        sampler_generator / noise_generator: the seeded generators whose states checkpoints keep.
        clipper: the BookKeepingClipper in bk mode (it draws its noise from ``noise_generator``), else None.
        rank / world_size: this process's place in a torchrun job (0 and 1 for a single process).
        plain: the trained module itself when the wrapping is deeper than Opacus' (DPDDP in a torchrun job).
    """

    spec: TrainSpec
    loaded: LoadedModel
    model: Any
    optimizer: Any
    criterion: Any
    loader: Any
    scheduler: Any
    engine: Any
    sample_rate: float
    noise_multiplier: float
    steps_per_epoch: int
    sampler_generator: Any
    noise_generator: Any
    device: Any
    train_set: Any
    eval_set: Any
    clipper: Any = None
    rank: int = 0
    world_size: int = 1
    plain: Any = None
    step: int = 0
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self):
        """The trained module without Opacus' (and DPDDP's) wrapper (a peft model with LoRA)."""
        return self.plain if self.plain is not None else getattr(self.model, "_module", self.model)

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and the output (rank 0; always true for a single process)."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether the ranks hold FSDP2 shards of the model (``sharding=fsdp`` in a torchrun job)."""
        return self.spec.sharding == "fsdp" and self.world_size > 1

    def model_state(self) -> dict[str, Any]:
        """The trained module's full state dict. Sharded: a collective every rank calls; rank 0 gets it (on CPU)."""
        if not self.sharded:
            return self.module.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_model_state(self, state: Mapping[str, Any]) -> None:
        """Load a full state dict (what :meth:`model_state` returned); sharded, every rank takes its shard of it."""
        if not self.sharded:
            self.module.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(self.module, dict(state), options=StateDictOptions(full_state_dict=True))

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state dict (sharded: gathered in full, as :meth:`model_state`)."""
        if not self.sharded:
            return self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(self.module, self.optimizer.original_optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, state: Mapping[str, Any]) -> None:
        """Load what :meth:`optimizer_state` returned."""
        if not self.sharded:
            self.optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(self.module, self.optimizer.original_optimizer, dict(state),
                                 options=StateDictOptions(full_state_dict=True))

    def unsharded_copy(self, state: Mapping[str, Any]):
        """A plain (unsharded, CPU) copy of the trained module holding ``state`` (what rank 0 saves after a sharded
        run: FSDP2 changed the trained module's parameters into shards in place)."""
        model = load_model(self.spec.model_dir).model
        if self.spec.method == "lora":
            model = _with_lora(model, self.loaded.task, self.spec)
        elif self.spec.method in ("head", "head_bias", "last_layer"):
            model = _with_head(model, self.loaded.task, self.spec.method)
        model.load_state_dict(state)
        return model

    def batch(self, examples: Sequence[Mapping[str, Any]]):
        """Examples encoded as one batch, the way the loader yields them."""
        data = encode_examples(self.loaded, examples, self.spec.max_length)
        return trim_batch(list(data.tensors), self.loaded.task)

    def _to_device(self, batch):
        return [t.to(self.device) for t in batch]

    def train_step(self, batch) -> float:
        """One DP step (per-sample clip, noise, optimizer, schedule) on a batch; returns the batch loss."""
        batch = self._to_device(trim_batch(self._nonempty(batch), self.loaded.task))
        self.model.train()
        if batch[0].shape[0] == 0:
            if not self.sharded:
                return self._empty_step()
            # Sharded ranks gather and reduce parameters inside forward and backward, so a rank whose Poisson draw
            # is empty still runs them, on one example of weight 0: its loss, gradient and clipped share are 0.
            batch = self._to_device(trim_batch([t[:1] for t in self.train_set.tensors], self.loaded.task))
            batch[-1] = batch[-1] * 0
        output, target, weights = forward(self.model, batch, self.loaded.task)
        loss = self.criterion(output, target, weights)
        if self.clipper is not None:
            self.clipper.backward(loss)
            self._release_bk()
        else:
            _backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.item()) if batch[0].shape[0] else 0.0

    def _release_bk(self) -> None:
        """Noise the clipped sum into ``p.grad`` and count the release, in the order of Opacus'
        ``DPOptimizer.pre_step`` (clip, noise, scale, then its accountant hook)."""
        self.clipper.finalize_gradients()
        self.engine.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def clipped_gradient_sum(self, batch):
        """The batch's summed per-sample-clipped gradients plus noise, flattened (the optimizer is not stepped).

        This is the real step's forward, loss, backward, clipping and noising (``DPOptimizer.pre_step``, or the
        book-keeping clipper in bk mode), stopped before the update: with ``noise_multiplier=0`` each sample adds
        at most ``max_grad_norm``. Like ``pre_step`` it counts one release in the accountant.
        """
        import torch

        batch = self._to_device(trim_batch(list(batch), self.loaded.task))
        self.model.train()
        output, target, weights = forward(self.model, batch, self.loaded.task)
        loss = self.criterion(output, target, weights)
        if self.clipper is not None:
            self.clipper.backward(loss)
            self._release_bk()
            expected = self.clipper.expected_batch_size
        else:
            _backward(loss)
            self.optimizer.pre_step()
            expected = self.optimizer.expected_batch_size
        grads = [p.grad.detach().flatten() * expected for p in self.module.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        return torch.cat(grads)

    def _empty_step(self) -> float:
        """An empty Poisson batch still takes a step: zero clipped sum plus noise (the mechanism the
        accountant counts). Attention layers cannot run on a zero-size batch, so no forward pass is made."""
        import torch

        if self.clipper is not None:
            self.clipper.discard()
            self._release_bk()
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            return 0.0
        for p in self.module.parameters():
            if p.requires_grad:
                if self.spec.grad_sample_mode == "ghost":
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return 0.0

    def _nonempty(self, batch):
        # Opacus turns an empty Poisson batch into zero-size tensors shaped like the first batch, or
        # into [] when the first batch of this process was empty (a resumed run): rebuild it here.
        if isinstance(batch, (list, tuple)) and len(batch) == len(self.train_set.tensors):
            return list(batch)
        return [t[:0] for t in self.train_set.tensors]

    def evaluate(self) -> dict[str, Any]:
        """The task's metrics on the eval examples."""
        return evaluate_session(self)

    def epsilon(self) -> float:
        """Privacy spent so far at ``spec.delta`` (0 before the first step; ``inf`` without noise).

        ``noise_multiplier == 0`` gives no guarantee: ε is infinite by design (Opacus' PRV accountant would
        raise an OverflowError on it, and RDP returns inf), as :func:`pipelines.privacy.run_epsilon` reports.
        """
        if not self.step:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        return float(self.engine.get_epsilon(self.spec.delta))


def _backward(loss) -> None:
    with warnings.catch_warnings():
        # The first layer's inputs (token ids) need no gradient, so torch warns on every backward hook call.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        loss.backward()



def prepare(spec: TrainSpec, *, log: Callable[[str], None] | None = None, context: Any = None) -> Session:
    """Load the start model and data and make them private; no step is taken.

    Args:
        spec: the run's spec.
        log: progress lines go here (default: stderr).
        context: a :class:`pipelines.train.ddp.DistributedContext` of a torchrun job with more than one process
            (:func:`pipelines.train.trainer.train` joins it): the model is wrapped in Opacus' DPDDP, each rank
            Poisson-samples its shard of the examples at the single-process rate, and the distributed DP
            optimizer all-reduces the clipped sums (noise is added once, on rank 0); with ``sharding=fsdp`` the model
            is sharded with FSDP2 instead and clipped with Opacus' ``ghost_fsdp``. None: one process.

    Returns:
        The session :func:`fit` trains.
    """
    import numpy as np
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader

    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    train, held = load_examples(spec)
    loaded = load_model(spec.model_dir)
    if loaded.task not in METRICS:
        raise TrainError(f"{spec.model_dir}: task {loaded.task!r} cannot be trained here")
    try:
        loaded.check_method(spec.method)  # full on fused experts or tied embeddings: refused, never trained wrongly
    except ModelFolderError as exc:
        raise TrainError(str(exc)) from None
    try:
        train_set = encode_examples(loaded, train, spec.max_length)
        eval_set = encode_examples(loaded, held, spec.max_length)
    except (KeyError, TypeError) as exc:
        raise DataError(f"examples do not fit task {loaded.task!r} (missing or bad field {exc}); "
                        "see pipelines.train.data for each task's fields") from None
    random.seed(spec.seed)
    np.random.seed(spec.seed % 2 ** 32)
    torch.manual_seed(spec.seed)
    distributed = context is not None and context.initialized
    if spec.sharding == "fsdp" and not distributed:
        raise TrainError("sharding=fsdp splits the model over the ranks of a torchrun job: train on 2 or more "
                         "processes (training.devices), or use sharding none")
    device = context.device if distributed else resolve_device(spec.device)
    model = loaded.model
    if spec.method == "lora":
        model = _with_lora(model, loaded.task, spec)
    elif spec.method in ("head", "head_bias", "last_layer"):
        model = _with_head(model, loaded.task, spec.method)
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    sampler_generator = torch.Generator().manual_seed(spec.seed)
    noise_generator = torch.Generator(device=device).manual_seed(spec.seed + 1)
    loader = DataLoader(train_set, batch_size=min(spec.batch_size, len(train_set)), shuffle=True,
                        generator=sampler_generator)
    if distributed:
        private = make_private_distributed(spec, model=model, optimizer=optimizer,
                                            criterion=loss_module(loaded.task), train_set=train_set, context=context,
                                            noise_generator=noise_generator)
        # Each rank draws its own inclusion masks (rank 0 the single-process stream).
        sampler_generator = private.loader.batch_sampler.generator
        return _session(spec, loaded, private, sampler_generator=sampler_generator, noise_generator=noise_generator,
                        device=device, train_set=train_set, eval_set=eval_set, n_eval=len(held), log=log,
                        rank=context.rank, world_size=context.world_size, plain=model)
    if spec.grad_sample_mode == "bk":
        private = make_private_bk(spec, model=model, optimizer=optimizer, criterion=loss_module(loaded.task),
                                   loader=loader, noise_generator=noise_generator)
        return _session(spec, loaded, private, sampler_generator=sampler_generator, noise_generator=noise_generator,
                        device=device, train_set=train_set, eval_set=eval_set, n_eval=len(held), log=log)
    kwargs = dict(module=model, optimizer=optimizer, criterion=loss_module(loaded.task), data_loader=loader,
                  max_grad_norm=spec.max_grad_norm, poisson_sampling=spec.poisson_sampling,
                  grad_sample_mode=spec.grad_sample_mode, loss_reduction="mean",
                  noise_generator=None if spec.secure_mode else noise_generator)
    with warnings.catch_warnings():
        # Opacus warns about secure_mode=False (the spec says it) and about the functorch fallback on every run.
        warnings.simplefilter("ignore")
        try:
            engine = PrivacyEngine(accountant=spec.accountant, secure_mode=spec.secure_mode)
        except ImportError as exc:
            raise TrainError(f"secure_mode needs torchcsprng ({exc}); install it on the training host or set "
                             "secure_mode false for experiments") from None
        if spec.noise_multiplier is not None:
            made = engine.make_private(noise_multiplier=spec.noise_multiplier, **kwargs)
        else:
            made = engine.make_private_with_epsilon(target_epsilon=spec.target_epsilon, target_delta=spec.delta,
                                                    epochs=spec.epochs, **kwargs)
    if spec.grad_sample_mode == "ghost":
        dp_model, dp_optimizer, criterion, dp_loader = made
    else:
        dp_model, dp_optimizer, dp_loader = made
        criterion = kwargs["criterion"]
    private = Private(model=dp_model, optimizer=dp_optimizer, scheduled=dp_optimizer.original_optimizer,
                       criterion=criterion, loader=dp_loader, engine=engine, sample_rate=1.0 / len(loader),
                       noise_multiplier=float(dp_optimizer.noise_multiplier))
    return _session(spec, loaded, private, sampler_generator=sampler_generator, noise_generator=noise_generator,
                    device=device, train_set=train_set, eval_set=eval_set, n_eval=len(held), log=log)


def _session(spec: TrainSpec, loaded: LoadedModel, private: Private, *, sampler_generator, noise_generator, device,
             train_set, eval_set, n_eval: int, log: Callable[[str], None] | None, rank: int = 0, world_size: int = 1,
             plain: Any = None) -> Session:
    import torch

    steps_per_epoch = len(private.loader)
    total = spec.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(private.scheduled, lr_lambda(spec, total))
    session = Session(spec=spec, loaded=loaded, model=private.model, optimizer=private.optimizer,
                      criterion=private.criterion, loader=private.loader, scheduler=scheduler, engine=private.engine,
                      sample_rate=private.sample_rate, noise_multiplier=private.noise_multiplier,
                      steps_per_epoch=steps_per_epoch, sampler_generator=sampler_generator,
                      noise_generator=noise_generator, device=device, train_set=train_set, eval_set=eval_set,
                      clipper=private.clipper, rank=rank, world_size=world_size, plain=plain)
    (log or stderr_log)(f"[train] task={loaded.task} n_train={len(train_set)} n_eval={n_eval} "
                     f"q={session.sample_rate:.5f} sigma={session.noise_multiplier:.4f} C={spec.max_grad_norm} "
                     f"steps/epoch={steps_per_epoch} epochs={spec.epochs} mode={spec.grad_sample_mode} "
                     f"method={spec.method} device={device}" + (f" world_size={world_size}" if world_size > 1 else ""))
    return session


def _with_lora(model, task: str, spec: TrainSpec):
    if task not in _LORA_TARGETS:
        raise TrainError(f"method=lora is for text models; task {task!r} trains fully (method=full)")
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0,
                                                  target_modules=_LORA_TARGETS[task], bias="none"))
    if task == "classification":
        # The head is new for the label set: it trains in full (peft's modules_to_save would wrap it in a
        # module Opacus does not know).
        for name, param in peft_model.named_parameters():
            if ".classifier." in name:
                param.requires_grad = True
    return peft_model


def _with_head(model, task: str, method: str):
    """Freeze all but the classifier and pooler (``head``), plus biases and LayerNorms (``head_bias``), plus the
    last encoder layer (``last_layer``): few trainable coordinates mean little noise per useful one under DP,
    and frozen embeddings keep the pretrained vocabulary features intact."""
    if task != "classification":
        raise TrainError(f"method={method} is for classification encoders; task {task!r}: use full or lora")
    layers = [name for name, _ in model.named_modules() if name.count(".") == 3 and ".encoder.layer." in name]
    last = f"{layers[-1]}." if method == "last_layer" and layers else None
    for name, param in model.named_parameters():
        trainable = name.startswith(("classifier.", "bert.pooler."))
        if method != "head":
            trainable = trainable or name.endswith(".bias") or ".LayerNorm." in name
        param.requires_grad = (trainable or (last is not None and name.startswith(last))) and ".embeddings." not in name
    return model
