"""The training forward: hidden states, then logits only where a label exists, in chunks.

A full (B, T, V) logits tensor is the largest thing in small-model training (V = 49k for
SmolLM2), and most positions are prompt tokens with no label. We run the decoder, pick the
positions whose *next* token is supervised, and project only those through the LM head, a chunk
at a time, recomputing each chunk's logits in backward instead of keeping them.

The loss is returned as a *sum* with its token count, so the loop can normalise by the supervised
tokens of a whole optimizer step (all micro-steps, all processes), which makes k accumulated
micro-steps exactly equal to one batch k times as large.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from onthejob.data.template import IGNORE_INDEX
from onthejob.train.attention import spans


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers *ForCausalLM module inside a PEFT wrapper (LoRA layers live inside it)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner


class TrainForward(nn.Module):
    """Wraps the model so accelerate/DDP sees one module whose forward returns the loss terms.

    ``per_example``: pass each packed row's example spans to attention, for a model switched to
    per-example attention (``attention.use_packed_attention``, whose result it should be). The
    model itself is left as it is, so wrapping an inference model (evaluation) changes nothing.
    """

    def __init__(self, model: nn.Module, chunk: int = 2048, per_example: bool = False):
        super().__init__()
        self.model = model
        self.chunk = chunk
        self.per_example = per_example
        self._head_cache = None

    def forward(self, input_ids, labels, position_ids=None, attention_mask=None):
        lm = causal_lm(self.model)
        packed = position_ids is not None and attention_mask is None
        extra = {"example_spans": spans(position_ids)} if packed and self.per_example else {}
        # use_cache=False matters: with a cache, transformers ignores the packed position ids
        # when building the mask and attention would cross examples.
        hidden = lm.model(
            input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask, use_cache=False, **extra
        ).last_hidden_state  # (B, T, H)
        targets = labels[:, 1:]  # (B, T-1): token t+1 is predicted at position t
        keep = targets != IGNORE_INDEX
        h = hidden[:, :-1][keep]  # (N, H), N = supervised tokens
        y = targets[keep]  # (N,)
        head = lm.lm_head
        if torch.is_grad_enabled() and type(head) is nn.Linear and head.bias is None:
            return _FusedHeadLoss.apply(h, head.weight, y, self.chunk, self._compute_weight(head.weight)), _ZERO.to(y.device), y.numel()
        loss_sum = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for start in range(0, y.numel(), self.chunk):
            hc, yc = h[start : start + self.chunk], y[start : start + self.chunk]
            if torch.is_grad_enabled():  # a head with an adapter or a bias: recompute in backward
                part, hits = checkpoint(_chunk_loss, head, hc, yc, use_reentrant=False)
            else:
                part, hits = _chunk_loss(head, hc, yc)
            loss_sum = loss_sum + part
            correct = correct + hits
        return loss_sum, correct, y.numel()

    def _compute_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """The head weight in the dtype its matmul runs in; a frozen head is cast once, not per call."""
        dtype = torch.get_autocast_dtype(weight.device.type) if torch.is_autocast_enabled(weight.device.type) else weight.dtype
        if weight.requires_grad:
            return weight.detach().to(dtype)
        key = (weight.data_ptr(), weight._version, dtype)
        if self._head_cache is None or self._head_cache[0] != key:
            self._head_cache = (key, weight.detach().to(dtype))
        return self._head_cache[1]


_ZERO = torch.zeros((), dtype=torch.long)  # token accuracy is reported by evaluation only


def _chunk_loss(head: nn.Module, h: torch.Tensor, y: torch.Tensor):
    logits = head(h).float()  # (n, V), float32 for a stable log-softmax
    loss = F.cross_entropy(logits, y, reduction="sum")
    if torch.is_grad_enabled():
        return loss, _ZERO.to(y.device)
    return loss, (logits.argmax(-1) == y).sum()


class _FusedHeadLoss(torch.autograd.Function):
    """sum(cross_entropy(h @ W.T, y)) whose gradients are worked out chunk by chunk in forward.

    Each chunk's logits live only while their chunk is processed (the (N, V) tensor never exists)
    and, unlike checkpointing, the head matmul is not run again in backward. d loss / d logits is
    softmax - onehot, computed in float32 as F.cross_entropy would; the matmuls run in the dtype
    of ``w`` (bf16 under autocast), as autograd's would.
    """

    @staticmethod
    def forward(ctx, h, weight, y, chunk: int, w):  # h (N, H), weight (V, H), y (N,)
        hw = h.detach().to(w.dtype)
        grad_h = torch.empty_like(hw)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if weight.requires_grad else None
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, y.numel(), chunk):
            hc, yc = hw[s : s + chunk], y[s : s + chunk]
            logp = torch.log_softmax(hc @ w.T, dim=-1, dtype=torch.float32)  # (n, V)
            loss -= logp.gather(1, yc[:, None]).sum()
            grad = logp.exp_()  # softmax, in place
            grad[torch.arange(yc.numel(), device=yc.device), yc] -= 1
            grad = grad.to(w.dtype)
            grad_h[s : s + chunk] = grad @ w
            if grad_w is not None:
                grad_w += (grad.T @ hc).float()
        ctx.grads = (grad_h, grad_w, h.dtype, weight.dtype)
        return loss

    @staticmethod
    def backward(ctx, g):
        grad_h, grad_w, h_dtype, w_dtype = ctx.grads
        del ctx.grads
        return (grad_h * g).to(h_dtype), None if grad_w is None else (grad_w * g).to(w_dtype), None, None, None
