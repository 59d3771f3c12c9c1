"""Per-example attention for packed rows (train/attention.py): the same maths as transformers'
block-diagonal mask, and still wired into transformers (a changed kwarg path or attention
registry in a transformers upgrade fails here)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from onthejob.train import attention
from onthejob.train.attention import _blocks, _causal, spans, use_packed_attention
from tests.tiny import tiny_model, tiny_tokenizer
from tests.train.helpers import lora, loss_and_grads, packed_batch


def test_spans_start_wherever_positions_restart():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 6, 7]])
    assert spans(pos) == [[(0, 3), (3, 5), (5, 6), (6, 8)], [(0, 8)]]


def test_only_sdpa_and_eager_models_are_switched():
    tok = tiny_tokenizer()
    for impl in ("sdpa", "eager"):
        model = tiny_model(tok, attn_implementation=impl)
        assert use_packed_attention(model.config)
        assert model.config._attn_implementation == attention.NAME
    other = tiny_model(tok)
    other.config._attn_implementation = "flash_attention_2"  # handles packed rows itself
    assert not use_packed_attention(other.config)
    assert other.config._attn_implementation == "flash_attention_2"


def test_per_example_attention_equals_the_block_diagonal_mask():
    model = tiny_model(tiny_tokenizer())
    batch = packed_batch(model.config.vocab_size)
    with torch.no_grad():
        masked = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).last_hidden_state
        assert use_packed_attention(model.config)
        per_example = model.model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
            example_spans=spans(batch["position_ids"]),
        ).last_hidden_state
        without_spans = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).last_hidden_state
    torch.testing.assert_close(per_example, masked, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(without_spans, masked)  # calls without spans keep the mask


def _logits(model, ids: torch.Tensor, position_ids: torch.Tensor, **extra) -> torch.Tensor:
    """(B, T, V) through the decoder body and the head, the path the training forward takes."""
    hidden = model.model(input_ids=ids, position_ids=position_ids, use_cache=False, **extra).last_hidden_state
    return model.lm_head(hidden)


@pytest.mark.parametrize("bf16", [False, True])
def test_a_packed_row_gives_each_example_what_it_gets_alone(bf16, monkeypatch):
    """Logits and parameter gradients of a packed row under per-example attention equal those of
    each example run on its own through an untouched model; and the per-example kernel really ran,
    once per example and layer, so transformers handed ``example_spans`` to our function."""
    tok = tiny_tokenizer()
    packed_model, alone_model = tiny_model(tok), tiny_model(tok)  # the same seed: the same weights
    assert use_packed_attention(packed_model.config)
    batch = packed_batch(packed_model.config.vocab_size, lengths=(7, 12, 5), max_len=32)
    ids, pos = batch["input_ids"], batch["position_ids"]
    (row,) = spans(pos)
    assert sorted(e - s for s, e in row) == [5, 7, 12]  # one row holding all three examples
    weights = torch.randn(ids.shape[1], packed_model.config.vocab_size, generator=torch.Generator().manual_seed(1))
    calls = []
    if bf16:  # bf16 matmuls, one example per call
        monkeypatch.setattr(attention, "_causal", lambda *a: calls.append(a[0].shape[1]) or _causal(*a))
    else:  # examples of similar length grouped: one call per layer over all spans
        real = attention._grouped
        monkeypatch.setattr(attention, "_grouped", lambda *a: calls.extend(e - s for s, e in a[3][0]) or real(*a))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        packed = _logits(packed_model, ids, pos, example_spans=spans(pos))[0].float()  # (T, V)
        assert sorted(calls) == sorted([5, 7, 12] * packed_model.config.num_hidden_layers)
        alone = torch.cat([_logits(alone_model, ids[:, s:e], pos[:, s:e])[0].float() for s, e in row])
    (packed * weights).sum().backward()
    (alone * weights).sum().backward()
    tol = dict(rtol=0.02, atol=0.02) if bf16 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(packed, alone, **tol)
    for (name, p), q in zip(packed_model.named_parameters(), alone_model.parameters(), strict=True):
        assert (p.grad - q.grad).norm() <= (0.02 if bf16 else 1e-4) * q.grad.norm() + 1e-6, name


@pytest.mark.parametrize("length", [1, 7, 64, 700])
def test_bf16_matmul_attention_matches_pytorch_attention(length):
    """Under bf16 autocast on a CPU, one example's causal attention runs as bf16 matmuls with an
    fp32 softmax: output and all three gradients agree with PyTorch's fp32 attention to bf16
    precision, grouped-query heads included (6 query heads on 2 key/value heads), and so do
    long examples whose queries go in several blocks."""
    assert len(_blocks(700, 6)) > 1 and len(_blocks(64, 6)) == 1
    g = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(h, length, 16, generator=g, requires_grad=True) for h in (6, 2, 2))
    grad_out = torch.randn(length, 6, 16, generator=g)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3, enable_gqa=True).transpose(0, 1)
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad_out)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _causal(q, k, v, 0.3, 0.0)
    assert out.dtype == torch.bfloat16
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    for got, want in zip((out, *grads), (ref, *ref_grads), strict=True):
        assert (got.float() - want).norm() <= 0.02 * want.norm() + 1e-6


def test_gradient_checkpointing_recomputes_the_same_packed_forward():
    tok = tiny_tokenizer()
    model = lora(tiny_model(tok, layers=3))
    per_example = use_packed_attention(model.config)
    assert per_example
    batch = packed_batch(model.config.vocab_size, lengths=(20, 30, 9), max_len=64)
    plain, grads = loss_and_grads(model, batch, per_example=per_example)
    model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.get_base_model().enable_input_require_grads()
    checkpointed, grads_ckpt = loss_and_grads(model, batch, per_example=per_example)
    assert checkpointed == pytest.approx(plain, rel=1e-4)
    for k in grads:
        torch.testing.assert_close(grads_ckpt[k], grads[k], rtol=1e-3, atol=1e-4)


def test_grouped_attention_pads_similar_examples_together_exactly():
    """Examples of similar length share one SDPA call, padded at the end: outputs and gradients
    are those of each example on its own."""
    from onthejob.train.attention import _grouped

    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 6, 40, 8, generator=g, requires_grad=True)
    k = torch.randn(2, 2, 40, 8, generator=g, requires_grad=True)
    v = torch.randn(2, 2, 40, 8, generator=g, requires_grad=True)
    example_spans = [[(0, 9), (9, 19), (19, 21), (21, 40)], [(0, 12), (12, 30), (30, 40)]]
    calls = []
    real = F.scaled_dot_product_attention
    try:
        F.scaled_dot_product_attention = lambda *a, **kw: calls.append(a[0].shape[0]) or real(*a, **kw)
        ours = _grouped(q, k, v, example_spans, 8**-0.5, 0.0)
    finally:
        F.scaled_dot_product_attention = real
    assert len(calls) < 7 and max(calls) > 1  # several examples per call
    parts = []
    for b, row in enumerate(example_spans):
        parts.append(torch.cat([real(q[b:b + 1, :, s:e], k[b:b + 1, :, s:e].repeat_interleave(3, 1), v[b:b + 1, :, s:e].repeat_interleave(3, 1),
                                     is_causal=True)[0].transpose(0, 1) for s, e in row]))
    ref = torch.stack(parts)
    torch.testing.assert_close(ours, ref)
    grads = torch.autograd.grad((ours * torch.arange(ours.numel()).view_as(ours).sin()).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref * torch.arange(ref.numel()).view_as(ref).sin()).sum(), (q, k, v))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
