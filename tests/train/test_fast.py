"""The speed-ups keep the maths: per-example attention, the fused head loss, and lean bf16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from onthejob.data.pack import collate, pack
from onthejob.data.template import Tokenized
from onthejob.train.fast import _blocks, _causal, lean_bf16, spans, use_packed_attention
from onthejob.train.loss import TrainForward, _FusedHeadLoss
from tests.tiny import tiny_model, tiny_tokenizer


def _packed_batch(vocab: int, lengths=(7, 12, 5), max_len=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for n in lengths:
        ids = torch.randint(5, vocab, (n,), generator=g).tolist()
        seqs.append(Tokenized(ids, [-100] * (n // 2) + ids[n // 2 :]))
    return collate(pack(seqs, max_len), pad_id=0)


def test_spans_start_wherever_positions_restart():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 6, 7]])
    assert spans(pos) == [[(0, 3), (3, 5), (5, 6), (6, 8)], [(0, 8)]]


def test_per_example_attention_equals_the_block_diagonal_mask():
    model = tiny_model(tiny_tokenizer())
    batch = _packed_batch(model.config.vocab_size)
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


@pytest.mark.parametrize("weight_grad", [False, True])
def test_fused_head_loss_matches_autograd(weight_grad):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=weight_grad)
    y = torch.randint(0, 50, (37,), generator=g)
    ref = F.cross_entropy(h @ w.T, y, reduction="sum")
    ref.backward(torch.tensor(0.5))
    ref_h, ref_w = h.grad.clone(), w.grad.clone() if weight_grad else None
    h.grad = w.grad = None
    fused = _FusedHeadLoss.apply(h, w, y, 8, w.detach())  # chunks of 8: 5 chunks, the last short
    fused.backward(torch.tensor(0.5))
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(h.grad, ref_h)
    if weight_grad:
        torch.testing.assert_close(w.grad, ref_w)


def _lora(model):
    from peft import LoraConfig, get_peft_model

    model.config.use_cache = False
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))


def test_gradient_checkpointing_recomputes_the_same_packed_forward():
    tok = tiny_tokenizer()
    model = _lora(tiny_model(tok, layers=3))
    batch = _packed_batch(model.config.vocab_size, lengths=(20, 30, 9), max_len=64)
    plain, grads = _loss_and_grads(model, batch)
    model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.get_base_model().enable_input_require_grads()
    checkpointed, grads_ckpt = _loss_and_grads(model, batch)
    assert checkpointed == pytest.approx(plain, rel=1e-4)
    for k in grads:
        torch.testing.assert_close(grads_ckpt[k], grads[k], rtol=1e-3, atol=1e-4)


def _loss_and_grads(model, batch):
    forward = TrainForward(model).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, n = forward(**batch)
    (loss / n).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.item() / n, grads


def test_lean_bf16_keeps_loss_and_lora_gradients():
    tok = tiny_tokenizer()
    model = _lora(tiny_model(tok))
    for name, p in model.named_parameters():  # LoRA B starts at zero: give it values to test
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    batch = _packed_batch(model.config.vocab_size, lengths=(20, 30, 9), max_len=64)
    before, grads_before = _loss_and_grads(model, batch)
    converted = lean_bf16(model)
    assert converted == 2 * 7  # every frozen linear of both layers, not the (tied) head
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    after, grads_after = _loss_and_grads(model, batch)
    assert after == pytest.approx(before, rel=1e-3)
    for k in grads_before:
        torch.testing.assert_close(grads_after[k], grads_before[k], rtol=0.05, atol=2e-3)
