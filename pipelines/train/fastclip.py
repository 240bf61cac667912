"""Book-keeping (BK) per-sample gradient clipping: DP-SGD with one forward and one backward pass.

The mechanism is Opacus' ``DPOptimizer`` exactly: every sample's gradient (over all trainable
parameters together) is clipped to ``max_grad_norm`` with ``c_i = min(1, C / (||g_i|| + 1e-6))``,
the clipped gradients are summed, Gaussian noise ``N(0, (noise_multiplier * C)^2)`` is added to
each coordinate, and with ``loss_reduction="mean"`` the result is divided by the expected (logical)
batch size. So Opacus' accountants (RDP, PRV) apply unchanged for Poisson-sampled batches.

What differs is how the clipped sum is computed (Bu et al., "Differentially Private Optimization
on Large Model at Small Cost", 2023):

* forward hooks keep each trainable layer's input ``A`` and output tensor;
* one ``torch.autograd.grad(loss, outputs)`` gives the output gradients ``G``. Asking for the
  outputs rather than the parameters means autograd never computes the (unclipped) weight
  gradients, so the backward costs what a non-private one costs minus the weight-gradient GEMMs;
* per-sample norms per layer, by the ghost-norm identity
  ``||sum_t a_t g_t^T||^2 = sum_{t,t'} (a_t . a_t')(g_t . g_t')`` when ``T^2 (d + p) < T d p``
  (long rows against small layers lose: then the per-sample gradients are materialised instead);
* the clipped summed gradient of each layer is one GEMM, ``(c * G)^T A``, the same GEMM a
  non-private backward does, with no second backward pass (ghost clipping needs one).

Trainable layers supported: ``nn.Linear`` (weight, bias), ``nn.Embedding`` (``padding_idx``
rows get no gradient, as in PyTorch), ``nn.LayerNorm`` (weight, bias) and RMSNorm layers
(``torch.nn.RMSNorm`` and transformers' ``*RMSNorm`` with a ``weight`` and ``variance_epsilon`` or
``eps``; ``(1 + weight)`` variants have the same gradient). A trainable parameter anywhere else
raises :class:`UnsupportedLayerError` at construction: freeze it or keep it out of the model.
LoRA (peft) works because only its ``lora_A``/``lora_B`` ``nn.Linear`` layers are trainable;
frozen layers get no hooks. Opacus' ``DPLSTM`` works too: its cells are ``nn.Linear`` layers called
once per time step (the calls are concatenated along the token axis), and the aliases it registers
for their parameters are attributed to the cells. Under bf16 autocast the GEMMs run in bf16 (fp32 accumulation), the
Gram matrices are rounded to bf16 and their products summed in fp32 (so a clipped norm can exceed C
by the order of bf16 rounding, as with any bf16 DP training); gradients land in the parameters' dtype.

Inputs must be batch-first, and every hooked layer must see the batch dimension: pass
``position_ids`` (and for BERT ``token_type_ids``) expanded to ``(B, T)``, else a broadcast
``(1, T)`` input mixes samples and :class:`PerSampleShapeError` says so.

Typical use::

    clipper = BookKeepingClipper(model, max_grad_norm=1.0, noise_multiplier=0.8,
                                 expected_batch_size=256)
    for physical_batch in logical_batch:          # one or more physical batches
        loss = loss_fn(model(**physical_batch))   # mean over the physical batch
        clipper.backward(loss)                    # clip per sample, accumulate
    clipper.finalize_gradients()                  # noise + scale -> p.grad
    optimizer.step(); optimizer.zero_grad(set_to_none=True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BookKeepingClipper",
    "PerSampleShapeError",
    "UnsupportedLayerError",
    "supported_layer_kind",
]

LossReduction = Literal["mean", "sum"]
NormMode = Literal["auto", "ghost", "direct"]


class UnsupportedLayerError(ValueError):
    """A trainable parameter lives in a layer type book-keeping clipping cannot handle."""


class PerSampleShapeError(ValueError):
    """A hooked layer saw an input whose leading dimension is not the batch."""


def supported_layer_kind(module: nn.Module) -> str | None:
    """Say how per-sample gradients of ``module``'s own parameters are computed.

    Args:
        module: any module.

    Returns:
        ``"linear"``, ``"embedding"``, ``"layernorm"``, ``"rmsnorm"``, or None if unsupported.
    """
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.LayerNorm):
        return "layernorm"
    if isinstance(module, nn.RMSNorm):
        return "rmsnorm"
    name = type(module).__name__
    if name.endswith("RMSNorm") and isinstance(getattr(module, "weight", None), nn.Parameter):
        if hasattr(module, "variance_epsilon") or hasattr(module, "eps"):
            return "rmsnorm"
    return None


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate a layer's calls along the token axis (a layer called once needs no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype sums are kept in: float32, or float64 for float64 models (tests compare exactly)."""
    return torch.promote_types(dtype, torch.float32)


@dataclass
class _Layer:
    name: str
    module: nn.Module
    layer_type: str
    params: list[nn.Parameter]
    # (input, output, output version at hook time) per forward call since the last backward
    calls: list[tuple[torch.Tensor, torch.Tensor, int]] = field(default_factory=list)


@dataclass
class _Prepared:
    """Per-layer tensors kept between the norm pass and the clipped-sum pass."""

    layer: _Layer
    a: torch.Tensor  # (B, T, d) input, or (B, T) indices for embeddings, or normalised input
    g: torch.Tensor  # (B, T, p) output gradient
    per_sample: dict[int, torch.Tensor] | None  # param index -> (B, *param.shape), when materialised


class BookKeepingClipper:
    """Per-sample clipping + Gaussian noise for every trainable parameter of a model.

    Attaches forward hooks at construction; call :meth:`remove` (or use it as a context manager)
    to detach them. The model itself is not wrapped: call it as usual.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        max_grad_norm: float,
        noise_multiplier: float,
        expected_batch_size: int,
        loss_reduction: LossReduction = "mean",
        norm_mode: NormMode = "auto",
        generator: torch.Generator | None = None,
    ) -> None:
        """Hook every trainable layer of ``module``.

        Args:
            module: the model; its trainable parameters are the ones privatised.
            max_grad_norm: clipping bound C on each sample's whole gradient (> 0).
            noise_multiplier: sigma; noise std is ``sigma * C`` per coordinate (>= 0).
            expected_batch_size: the logical batch size the noisy sum is divided by when
                ``loss_reduction="mean"`` (Poisson sampling: ``sample_rate * dataset size``).
            loss_reduction: ``"mean"`` if the loss passed to :meth:`backward` is the mean over the
                physical batch (per-sample gradients are then the gradient times the batch size,
                as in Opacus), ``"sum"`` if it is the sum.
            norm_mode: ``"auto"`` picks ghost norms or materialised per-sample gradients per layer
                by cost; ``"ghost"``/``"direct"`` force one (Linear layers only).
            generator: random generator for the noise (on the parameters' device).

        Raises:
            UnsupportedLayerError: a trainable parameter belongs to an unsupported layer.
            ValueError: a bound or size is out of range.
        """
        if not (isinstance(max_grad_norm, (int, float)) and max_grad_norm > 0 and math.isfinite(max_grad_norm)):
            raise ValueError(f"max_grad_norm must be a positive number, got {max_grad_norm!r}")
        if not (isinstance(noise_multiplier, (int, float)) and noise_multiplier >= 0):
            raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
        if not (isinstance(expected_batch_size, int) and expected_batch_size > 0):
            raise ValueError(f"expected_batch_size must be a positive int, got {expected_batch_size!r}")
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        if norm_mode not in ("auto", "ghost", "direct"):
            raise ValueError(f"norm_mode must be 'auto', 'ghost' or 'direct', got {norm_mode!r}")
        self.module = module
        self.max_grad_norm = float(max_grad_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.expected_batch_size = expected_batch_size
        self.loss_reduction = loss_reduction
        self.norm_mode = norm_mode
        self.generator = generator
        self.layers = self._find_layers(module)
        self.params: list[nn.Parameter] = [p for layer in self.layers for p in layer.params]
        self._summed: dict[int, torch.Tensor] = {}
        self._handles = [layer.module.register_forward_hook(self._make_hook(layer)) for layer in self.layers]

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _find_layers(module: nn.Module) -> list[_Layer]:
        layers: list[_Layer] = []
        seen: set[int] = set()
        for name, sub in module.named_modules():
            # A module may re-register a descendant's parameter under another name (Opacus' DPLSTM lists its
            # cells' RNNLinear weights as weight_ih_l0, ...): the descendant owns it and is the layer hooked.
            nested = {id(p) for child in sub.children() for p in child.parameters()}
            own = [p for p in sub.parameters(recurse=False) if p.requires_grad and id(p) not in nested]
            if not own:
                continue
            layer_type = supported_layer_kind(sub)
            if layer_type is None:
                raise UnsupportedLayerError(
                    f"trainable parameters in layer {name!r} ({type(sub).__name__}) are not supported by "
                    "book-keeping clipping (supported: Linear, Embedding, LayerNorm, RMSNorm): "
                    "freeze them (requires_grad_(False)) or replace the layer"
                )
            if layer_type == "embedding" and (sub.sparse or sub.scale_grad_by_freq):
                raise UnsupportedLayerError(
                    f"embedding {name!r} uses sparse=True or scale_grad_by_freq=True: not supported; turn them off"
                )
            for p in own:
                if id(p) in seen:
                    raise UnsupportedLayerError(
                        f"parameter of {name!r} is shared with another layer (tied weights): untie them "
                        "(e.g. tie_word_embeddings=False)"
                    )
                seen.add(id(p))
            layers.append(_Layer(name=name or type(sub).__name__, module=sub, layer_type=layer_type, params=own))
        if not layers:
            raise ValueError("the model has no trainable parameters: nothing to privatise")
        return layers

    def _make_hook(self, layer: _Layer):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not (module.training and torch.is_grad_enabled()) or not inputs:
                return
            if torch._C._current_graph_task_id() != -1:
                # A forward re-run inside backward (activation checkpointing recomputes a block): its outputs are
                # not the ones the loss was computed from, and this layer's call is already recorded.
                return
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return
            layer.calls.append((inputs[0].detach(), output, output._version))

        return hook

    def remove(self) -> None:
        """Detach the hooks and drop anything recorded."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.discard()

    def discard(self) -> None:
        """Forget activations recorded by forward passes that will not be back-propagated."""
        for layer in self.layers:
            layer.calls.clear()

    def __enter__(self) -> BookKeepingClipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # --------------------------------------------------------------- backward

    def backward(self, loss: torch.Tensor) -> torch.Tensor:
        """Back-propagate ``loss`` once, clip every sample's gradient and add it to the running sum.

        Call once per physical batch; :meth:`finalize_gradients` then turns the sum into ``p.grad``.
        ``p.grad`` is not touched here.

        Args:
            loss: scalar loss of the last forward pass of the hooked model.

        Returns:
            The per-sample gradient norms before clipping, shape ``(B,)``, float32 (float64 for float64 models).

        Raises:
            PerSampleShapeError: a layer's input does not carry the batch dimension.
            RuntimeError: no forward pass was recorded, or an output was changed in place.
        """
        active = [layer for layer in self.layers if layer.calls]
        if not active:
            raise RuntimeError(
                "no forward pass was recorded: run the model in train mode with gradients enabled before backward()"
            )
        outputs = []
        for layer in active:
            for _, out, version in layer.calls:
                if out._version != version:
                    raise RuntimeError(
                        f"output of layer {layer.name!r} was modified in place after the layer ran; "
                        "use out-of-place ops (e.g. inplace=False activations) after hooked layers"
                    )
                outputs.append(out)
        grads = torch.autograd.grad(loss, outputs, allow_unused=True)
        batch = self._batch_size(active)
        scale = float(batch) if self.loss_reduction == "mean" else 1.0

        prepared: list[_Prepared] = []
        squares: list[torch.Tensor] = []
        # q/k/v (and gate/up) read the same input: its cast and Gram matrix are computed once
        self._shared: dict[tuple, torch.Tensor] = {}
        k = 0
        try:
            for layer in active:
                n = len(layer.calls)
                layer_grads = grads[k : k + n]
                k += n
                item, sq = self._layer_norms(layer, layer_grads, batch)
                layer.calls.clear()
                if item is None:
                    continue
                prepared.append(item)
                squares.extend(sq)
        finally:
            self._shared = {}
            self.discard()
        if squares:
            wide = max((t.dtype for t in squares), key=lambda dt: torch.finfo(dt).bits)
            sq_norms = torch.stack([t.to(wide) for t in squares]).sum(dim=0)
        else:
            sq_norms = torch.zeros(batch, dtype=_wide(loss.dtype), device=loss.device)
        norms = sq_norms.sqrt() * scale
        clip = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        coef = clip * scale
        coefs: dict[torch.dtype, torch.Tensor] = {}
        for item in prepared:
            self._accumulate_clipped(item, coef, coefs)
        return norms

    @staticmethod
    def _batch_size(active: list[_Layer]) -> int:
        sizes = {(layer.name, call[0].shape[0] if call[0].dim() else 0) for layer in active for call in layer.calls}
        batch = max(size for _, size in sizes)
        bad = sorted(name for name, size in sizes if size != batch)
        if bad:
            raise PerSampleShapeError(
                f"layers {bad[:5]} saw inputs whose first dimension is not the batch size {batch}: inputs must be "
                "batch-first and not broadcast; pass position_ids/token_type_ids expanded to (batch, seq_len)"
            )
        return batch

    def _choose_ghost(self, t: int, d: int, p: int) -> bool:
        if self.norm_mode != "auto":
            return self.norm_mode == "ghost"
        # Ghost norm costs B*T^2*(d+p) multiply-adds; materialising costs B*T*d*p.
        return t * (d + p) < d * p

    def _shared_tensor(self, key: tuple, make) -> torch.Tensor:
        value = self._shared.get(key)
        if value is None:
            value = self._shared[key] = make()
        return value

    def _layer_norms(
        self, layer: _Layer, grads: tuple[torch.Tensor | None, ...], batch: int
    ) -> tuple[_Prepared | None, list[torch.Tensor]]:
        pairs = [(inp, g) for (inp, _, _), g in zip(layer.calls, grads) if g is not None]
        if not pairs:
            return None, []
        module = layer.module
        if layer.layer_type == "embedding":
            a = _cat([inp.reshape(batch, -1) for inp, _ in pairs])
            g = _cat([gr.reshape(batch, -1, gr.shape[-1]) for _, gr in pairs])
            if module.padding_idx is not None:
                # PyTorch gives the padding row no gradient, so those positions contribute nothing.
                keep = a != module.padding_idx
                if not bool(keep.all()):
                    g = g * keep.unsqueeze(-1).to(g.dtype)
            same = a.unsqueeze(2) == a.unsqueeze(1)
            ggt = torch.bmm(g, g.transpose(1, 2))
            sq = (ggt * same).sum(dim=(1, 2), dtype=_wide(ggt.dtype))
            return _Prepared(layer, a, g, None), [sq]
        if layer.layer_type == "linear":
            g = _cat([gr.reshape(batch, -1, gr.shape[-1]) for _, gr in pairs])
            dtype = g.dtype
            key = (tuple((inp.data_ptr(), tuple(inp.shape), inp.stride()) for inp, _ in pairs), dtype)
            a = self._shared_tensor(
                ("a", key), lambda: _cat([inp.reshape(batch, -1, inp.shape[-1]).to(dtype) for inp, _ in pairs])
            )
            t, d, p = a.shape[1], a.shape[2], g.shape[2]
            wide = _wide(dtype)
            sq: list[torch.Tensor] = []
            per_sample: dict[int, torch.Tensor] | None = None
            if module.weight.requires_grad:
                if self._choose_ghost(t, d, p):
                    aat = self._shared_tensor(("gram", key), lambda: torch.bmm(a, a.transpose(1, 2)))
                    ggt = torch.bmm(g, g.transpose(1, 2))
                    sq.append((aat * ggt).sum(dim=(1, 2), dtype=wide))
                else:
                    gs = torch.bmm(g.transpose(1, 2), a)  # (B, p, d)
                    sq.append(gs.pow(2).sum(dim=(1, 2), dtype=wide))
                    per_sample = {0: gs}
            if module.bias is not None and module.bias.requires_grad:
                sq.append(g.sum(dim=1, dtype=wide).pow(2).sum(dim=1))
            return _Prepared(layer, a, g, per_sample), sq
        # layernorm / rmsnorm: per-sample gradients are vectors of size p, always materialised
        shape = tuple(module.normalized_shape) if hasattr(module, "normalized_shape") else tuple(module.weight.shape)
        nd = len(shape)
        dims = tuple(range(-nd, 0))
        xs, gs = [], []
        for inp, gr in pairs:
            wide = _wide(inp.dtype)
            if layer.layer_type == "layernorm":
                xhat = F.layer_norm(inp.to(wide), shape, eps=module.eps)
            elif hasattr(module, "variance_epsilon"):
                # transformers' RMSNorm normalises in float32 and casts back before scaling: same here,
                # so the gradient is the one autograd would compute
                x = inp.to(torch.float32)
                xhat = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + module.variance_epsilon)
                xhat = xhat.to(inp.dtype).to(wide)
            else:
                eps = module.eps if module.eps is not None else torch.finfo(inp.dtype).eps
                x = inp.to(wide)
                xhat = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
            xs.append(xhat.reshape(batch, -1, *shape))
            gs.append(gr.to(_wide(gr.dtype)).reshape(batch, -1, *shape))
        xhat = _cat(xs)
        g = _cat(gs)
        per_sample = {}
        sq = []
        for i, param in enumerate(layer.params):
            ps = (g * xhat).sum(dim=1) if param is module.weight else g.sum(dim=1)
            per_sample[i] = ps
            sq.append(ps.pow(2).reshape(batch, -1).sum(dim=1))
        return _Prepared(layer, xhat, g, per_sample), sq

    def _accumulate_clipped(self, item: _Prepared, coef: torch.Tensor, coefs: dict) -> None:
        layer, a, g = item.layer, item.a, item.g
        module = layer.module

        def coef_as(dtype: torch.dtype) -> torch.Tensor:
            if dtype not in coefs:
                coefs[dtype] = coef.to(dtype)
            return coefs[dtype]

        for i, param in enumerate(layer.params):
            if item.per_sample is not None and i in item.per_sample:
                ps = item.per_sample[i]
                grad = (coef_as(ps.dtype) @ ps.reshape(ps.shape[0], -1)).view(ps.shape[1:])
            elif layer.layer_type == "embedding":
                wide = _wide(g.dtype)
                weighted = (g.to(wide) * coef_as(wide).view(-1, 1, 1)).reshape(-1, g.shape[-1])
                grad = torch.zeros(param.shape, dtype=wide, device=g.device)
                grad.index_add_(0, a.reshape(-1), weighted)
            elif param is module.weight:
                b, t, d = a.shape
                p = g.shape[-1]
                c = coef_as(g.dtype)
                # scale the narrower operand: fewer bytes to rewrite
                if p <= d:
                    grad = (g * c.view(-1, 1, 1)).reshape(b * t, p).t() @ a.reshape(b * t, d)
                else:
                    grad = g.reshape(b * t, p).t() @ (a * c.view(-1, 1, 1)).reshape(b * t, d)
            else:  # linear bias
                wide = _wide(g.dtype)
                grad = coef_as(wide) @ g.sum(dim=1, dtype=wide)
            grad = grad.to(param.dtype).view_as(param)
            key = id(param)
            if key in self._summed:
                self._summed[key].add_(grad)
            else:
                self._summed[key] = grad

    # ------------------------------------------------------------------ noise

    def finalize_gradients(self) -> None:
        """Add the Gaussian noise to the clipped sums, scale, and store the result in ``p.grad``.

        Exactly Opacus' ``DPOptimizer.add_noise`` + ``scale_grad``: ``p.grad = (sum_i c_i g_i +
        N(0, (sigma C)^2 I)) / expected_batch_size`` (no division for ``loss_reduction="sum"``).
        A logical batch with no samples (possible under Poisson sampling) gets noise only.
        The running sums are reset.
        """
        std = self.noise_multiplier * self.max_grad_norm
        groups: dict[tuple, list[tuple[nn.Parameter, torch.Tensor]]] = {}
        for param in self.params:
            summed = self._summed.pop(id(param), None)
            if summed is None:
                summed = torch.zeros_like(param)
            groups.setdefault((summed.device, summed.dtype), []).append((param, summed))
        self._summed.clear()
        # one noise draw and two fused multi-tensor ops per device/dtype, not three kernels per parameter
        for (device, dtype), members in groups.items():
            tensors = [summed for _, summed in members]
            if std > 0:
                sizes = [t.numel() for t in tensors]
                noise = torch.normal(
                    mean=0.0, std=std, size=(sum(sizes),), device=device, dtype=dtype, generator=self.generator
                )
                torch._foreach_add_(tensors, [n.view_as(t) for n, t in zip(noise.split(sizes), tensors)])
            if self.loss_reduction == "mean":
                torch._foreach_div_(tensors, float(self.expected_batch_size))
            for param, summed in members:
                param.grad = summed.view_as(param)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Finalize the noisy gradients, take ``optimizer.step()`` and clear the gradients.

        Args:
            optimizer: an optimizer over (a superset of) :attr:`params`.
        """
        self.finalize_gradients()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
