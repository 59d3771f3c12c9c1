"""The training forward (train/loss.py): the fused head loss keeps autograd's maths, and wrapping a
model changes nothing about it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from onthejob.train.attention import use_packed_attention
from onthejob.train.loss import TrainForward, _FusedHeadLoss
from tests.tiny import tiny_model, tiny_tokenizer
from tests.train.helpers import packed_batch


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


@pytest.mark.parametrize("grad", [False, True])
def test_wrapping_a_model_leaves_its_attention_as_it_is(grad):
    """Evaluation wraps an inference model in TrainForward: the model must come out unchanged."""
    model = tiny_model(tiny_tokenizer())
    forward = TrainForward(model)
    assert forward.per_example is False
    with torch.set_grad_enabled(grad):
        loss, _, n = forward(**packed_batch(model.config.vocab_size))
    assert n > 0 and torch.isfinite(loss)
    assert model.config._attn_implementation == "sdpa"


def test_per_example_spans_give_the_loss_of_the_mask():
    tok = tiny_tokenizer()
    masked, switched = tiny_model(tok), tiny_model(tok)
    assert use_packed_attention(switched.config)
    batch = packed_batch(masked.config.vocab_size, lengths=(9, 14, 20), max_len=48)
    with torch.no_grad():
        want = TrainForward(masked)(**batch)
        got = TrainForward(switched, per_example=True)(**batch)
    assert got[2] == want[2] > 0
    assert got[0].item() == pytest.approx(want[0].item(), rel=1e-5)
