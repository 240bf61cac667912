"""Book-keeping clipping against Opacus' per-sample clipping on tiny seeded models (CPU, float64)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.train.fastclip import BookKeepingClipper, PerSampleShapeError, UnsupportedLayerError

transformers = pytest.importorskip("transformers")
opacus = pytest.importorskip("opacus")

B, T = 4, 6


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_llama(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(config).double()
    with torch.no_grad():  # random norm weights, so their per-sample gradients are not trivially alike
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model.train()


def tiny_bert(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return transformers.BertForSequenceClassification(config).double().train()


def lm_batch(seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, 50, (B, T), generator=gen)


def lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def bert_loss(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(ids.shape[1]).expand_as(ids).contiguous()
    logits = model(input_ids=ids, position_ids=positions, token_type_ids=torch.zeros_like(ids)).logits
    return F.cross_entropy(logits, labels)


def opacus_clipped(model: nn.Module, loss_fn, max_grad_norm: float) -> dict[str, torch.Tensor]:
    """Opacus hooks + DPOptimizer with no noise: the clipped, summed, scaled gradient per parameter name."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    names = {id(p): n for n, p in model.named_parameters()}
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    params = [p for p in gsm.parameters() if p.requires_grad]
    optimizer = DPOptimizer(
        torch.optim.SGD(params, lr=0.0), noise_multiplier=0.0, max_grad_norm=max_grad_norm,
        expected_batch_size=B,
    )
    loss_fn(gsm).backward()
    optimizer.pre_step()
    out = {names[id(p)]: p.grad.detach().clone() for p in params}
    gsm._close()
    return out


def bk_clipped(model: nn.Module, loss_fn, max_grad_norm: float, **kwargs) -> tuple[dict, torch.Tensor]:
    clipper = BookKeepingClipper(
        model, max_grad_norm=max_grad_norm, noise_multiplier=0.0, expected_batch_size=B, **kwargs
    )
    norms = clipper.backward(loss_fn(model))
    clipper.finalize_gradients()
    clipper.remove()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return grads, norms


def assert_same(bk: dict, reference: dict, rtol: float = 1e-9) -> None:
    assert sorted(bk) == sorted(reference)
    for name in reference:
        scale = float(reference[name].abs().max())
        torch.testing.assert_close(bk[name], reference[name], rtol=rtol, atol=rtol * scale, msg=name)


def clip_between(norms: torch.Tensor) -> float:
    """A bound that clips the larger half of the batch and leaves the rest alone."""
    ordered = norms.sort().values
    return float((ordered[B // 2 - 1] + ordered[B // 2]) / 2)


def test_llama_full_fine_tuning_matches_opacus():
    ids = lm_batch()
    model = tiny_llama()
    reference_model = copy.deepcopy(model)
    _, norms = bk_clipped(copy.deepcopy(model), lambda m: lm_loss(m, ids), 1e9)
    bound = clip_between(norms)
    bk, _ = bk_clipped(model, lambda m: lm_loss(m, ids), bound)
    reference = opacus_clipped(reference_model, lambda m: lm_loss(m, ids), bound)
    assert len(reference) == 2 + 2 * 9 + 1  # embed, lm_head, 9 per layer (7 Linear + 2 RMSNorm), final norm
    assert_same(bk, reference)


def test_bert_classification_matches_opacus():
    ids = lm_batch(seed=2) % 39 + 1  # no padding token (0): Opacus would give the padding row a gradient
    labels = torch.tensor([0, 2, 1, 2])
    model = tiny_bert()
    reference_model = copy.deepcopy(model)
    _, norms = bk_clipped(copy.deepcopy(model), lambda m: bert_loss(m, ids, labels), 1e9)
    bound = clip_between(norms)
    bk, _ = bk_clipped(model, lambda m: bert_loss(m, ids, labels), bound)
    reference = opacus_clipped(reference_model, lambda m: bert_loss(m, ids, labels), bound)
    assert len(reference) == 41  # 3 embeddings + LN(2) + 2 layers x 16 + pooler(2) + classifier(2)
    assert_same(bk, reference)


def test_llama_lora_matches_opacus_and_hooks_only_adapters():
    peft = pytest.importorskip("peft")
    ids = lm_batch(seed=3)
    lora = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    model = peft.get_peft_model(tiny_llama(), lora)
    with torch.no_grad():  # peft starts lora_B at zero, which would make every lora_A gradient zero
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    reference_model = copy.deepcopy(model)
    clipper = BookKeepingClipper(model, max_grad_norm=1.0, noise_multiplier=0.0, expected_batch_size=B)
    assert sorted({layer.name.rsplit(".", 2)[-2] for layer in clipper.layers}) == ["lora_A", "lora_B"]
    assert len(clipper.layers) == 2 * 2 * 2
    clipper.remove()
    _, norms = bk_clipped(copy.deepcopy(model), lambda m: lm_loss(m, ids), 1e9)
    bound = clip_between(norms)
    bk, _ = bk_clipped(model, lambda m: lm_loss(m, ids), bound)
    reference = opacus_clipped(reference_model, lambda m: lm_loss(m, ids), bound)
    assert len(reference) == 8
    assert_same(bk, reference)


def test_dplstm_matches_opacus_and_its_aliases_are_its_cells():
    """Opacus' DPLSTM also registers its cells' RNNLinear weights as weight_ih_l0, ...: they are hooked once,
    in the cells, whose per-time-step calls add up to each sample's gradient."""
    from opacus.layers import DPLSTM

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = DPLSTM(3, 5, batch_first=True)
            self.head = nn.Linear(5, 1)

        def forward(self, x):
            states, _ = self.lstm(x)
            return self.head(states[:, -1]).squeeze(-1)

    torch.manual_seed(0)
    model = Model().double().train()
    x = torch.randn(B, T, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = torch.randn(B, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def loss_fn(m: nn.Module) -> torch.Tensor:
        return F.mse_loss(m(x), y)

    reference_model = copy.deepcopy(model)
    clipper = BookKeepingClipper(copy.deepcopy(model), max_grad_norm=1.0, noise_multiplier=0.0, expected_batch_size=B)
    assert sorted(layer.name for layer in clipper.layers) == ["head", "lstm.l0.hh", "lstm.l0.ih"]
    clipper.remove()
    _, norms = bk_clipped(copy.deepcopy(model), loss_fn, 1e9)
    bound = clip_between(norms)
    bk, _ = bk_clipped(model, loss_fn, bound)
    reference = opacus_clipped(reference_model, loss_fn, bound)
    assert len(reference) == 6  # weight_ih_l0, bias_ih_l0, weight_hh_l0, bias_hh_l0, head.weight, head.bias
    assert_same(bk, reference)


def test_ghost_and_direct_norms_give_the_same_gradient():
    ids = lm_batch(seed=4)
    model = tiny_llama()
    ghost, ghost_norms = bk_clipped(copy.deepcopy(model), lambda m: lm_loss(m, ids), 0.5, norm_mode="ghost")
    direct, direct_norms = bk_clipped(model, lambda m: lm_loss(m, ids), 0.5, norm_mode="direct")
    torch.testing.assert_close(ghost_norms, direct_norms, rtol=1e-10, atol=0.0)
    assert_same(ghost, direct)


def test_outlier_contribution_is_bounded_by_the_clipping_norm():
    ids = lm_batch(seed=5)
    weights = torch.tensor([1e6, 1.0, 1.0, 1.0], dtype=torch.float64)  # sample 0 is an outlier

    def weighted_loss(m: nn.Module, rows: slice) -> torch.Tensor:
        logits = m(input_ids=ids[rows]).logits
        per_token = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids[rows, 1:].reshape(-1), reduction="none"
        )
        return (per_token.view(logits.shape[0], -1).mean(dim=1) * weights[rows]).sum()

    bound = 0.25
    model = tiny_llama()
    everyone = BookKeepingClipper(model, max_grad_norm=bound, noise_multiplier=0.0, expected_batch_size=1,
                                  loss_reduction="sum")
    norms = everyone.backward(weighted_loss(model, slice(0, B)))
    everyone.finalize_gradients()
    with_outlier = [p.grad.clone() for p in everyone.params]
    everyone.backward(weighted_loss(model, slice(1, B)))
    everyone.finalize_gradients()
    without = [p.grad.clone() for p in everyone.params]
    contribution = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(with_outlier, without)))
    assert float(norms[0]) > 1e5 * bound
    assert float(contribution) == pytest.approx(bound, rel=1e-6)
    assert float(contribution) <= bound


def test_physical_batches_accumulate_to_the_logical_batch():
    ids = lm_batch(seed=6)
    model = tiny_llama()
    whole, _ = bk_clipped(copy.deepcopy(model), lambda m: lm_loss(m, ids), 0.3)
    clipper = BookKeepingClipper(model, max_grad_norm=0.3, noise_multiplier=0.0, expected_batch_size=B)
    clipper.backward(lm_loss(model, ids[:1]))
    clipper.backward(lm_loss(model, ids[1:]))
    clipper.finalize_gradients()
    split = {n: p.grad for n, p in model.named_parameters()}
    # LlamaRMSNorm normalises in float32 even in a float64 model, and other batch shapes round differently
    assert_same(split, whole, rtol=1e-6)


def test_noise_std_is_sigma_times_c_over_expected_batch_size():
    torch.manual_seed(0)
    layer = nn.Linear(100, 200)
    clipper = BookKeepingClipper(
        layer, max_grad_norm=0.5, noise_multiplier=2.0, expected_batch_size=10,
        generator=torch.Generator().manual_seed(7),
    )
    out = layer(torch.zeros(3, 100))
    clipper.backward((out * 0.0).sum())  # zero data gradient: p.grad is the noise alone
    clipper.finalize_gradients()
    noise = torch.cat([layer.weight.grad.flatten(), layer.bias.grad.flatten()])
    assert noise.numel() == 20200
    # standard error of a sample std over 20,200 draws is 0.5%: 3% is six of them
    assert float(noise.std()) == pytest.approx(2.0 * 0.5 / 10, rel=0.03)
    assert abs(float(noise.mean())) < 4 * 0.1 / 20200**0.5


def test_unsupported_and_tied_layers_are_refused_with_advice():
    with pytest.raises(UnsupportedLayerError, match="Conv1d.*freeze"):
        BookKeepingClipper(nn.Sequential(nn.Conv1d(2, 2, 1)), max_grad_norm=1.0, noise_multiplier=1.0,
                           expected_batch_size=4)
    tied = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    tied[1].weight = tied[0].weight
    with pytest.raises(UnsupportedLayerError, match="tie_word_embeddings=False"):
        BookKeepingClipper(tied, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_size=4)
    with pytest.raises(ValueError, match="max_grad_norm"):
        BookKeepingClipper(nn.Linear(2, 2), max_grad_norm=0.0, noise_multiplier=1.0, expected_batch_size=4)


def test_broadcast_position_ids_are_refused():
    model = tiny_bert()
    clipper = BookKeepingClipper(model, max_grad_norm=1.0, noise_multiplier=0.0, expected_batch_size=B)
    ids = lm_batch() % 39 + 1
    logits = model(input_ids=ids, position_ids=torch.arange(T).unsqueeze(0), token_type_ids=torch.zeros_like(ids))
    with pytest.raises(PerSampleShapeError, match="position_ids"):
        clipper.backward(F.cross_entropy(logits.logits, torch.zeros(B, dtype=torch.long)))


def test_padding_rows_get_no_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(6, 4, padding_idx=0), nn.Linear(4, 1))
    ids = torch.tensor([[0, 1, 2], [3, 0, 0]])
    clipper = BookKeepingClipper(model, max_grad_norm=1e9, noise_multiplier=0.0, expected_batch_size=2)
    clipper.backward(model(ids).sum())
    clipper.finalize_gradients()
    bk = model[0].weight.grad.clone()
    model.zero_grad()
    model(ids).sum().backward()  # unclipped, mean reduction over 2 then divided by 2: the ordinary gradient
    torch.testing.assert_close(bk, model[0].weight.grad)
    assert float(bk[0].abs().sum()) == 0.0


def test_bf16_autocast_is_close_to_fp32():
    ids = lm_batch(seed=8)
    model = tiny_llama().float()
    exact, _ = bk_clipped(copy.deepcopy(model), lambda m: lm_loss(m, ids), 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _ = bk_clipped(model, lambda m: lm_loss(m, ids), 0.5)
    num = torch.sqrt(sum(((mixed[n].float() - exact[n]) ** 2).sum() for n in exact))
    den = torch.sqrt(sum((exact[n] ** 2).sum() for n in exact))
    assert all(g.dtype == torch.float32 for g in mixed.values())
    assert float(num / den) < 0.05
