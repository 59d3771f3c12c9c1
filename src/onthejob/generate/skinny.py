"""Linear layers for decode steps on a CPU: a few rows against a large weight.

A decode step multiplies a handful of rows (one per sequence in the batch) by every weight of the
model, so its time is the time to stream the weights from memory, and how well that goes depends
on the kernel (measured on 2 cores, per 1536 x 576 weight out of cache):

- float32: ``nn.Linear`` computes x @ W.T, and for m <= 16 rows MKL streams W at a fraction of
  the bandwidth that W @ x.T reaches; one row, a matrix-vector product, is slower still than two
  (1 row 262 us vs 112 us as W @ [x; x].T, 2 rows 411 vs 108, 8 rows 398 vs 321). The products
  are the same, summed in another order: results agree to float32 rounding.
- bfloat16: oneDNN's kernels on its own blocked weight layout (the one torch.compile's CPU
  backend prepacks) take 89-91 us for 1-8 rows against 121-175 us for ``nn.Linear``, with the
  same results. The prepacked copy costs memory (the weights once more, in bf16), so it is made
  only for models whose linear weights total at most ``PACK_BUDGET`` bytes.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Iterator

import torch
from torch import nn

MAX_ROWS = 16  # above this x @ W.T is as fast (and at 17 rows MKL sums in the same order)
PACK_BUDGET = 2 * 2**30  # bytes of bf16 linear weights up to which they are prepacked (~1B parameters)


def linears(model: nn.Module) -> list[nn.Linear]:
    """The plain ``nn.Linear`` layers of ``model`` whose forward nobody has replaced."""
    return [m for m in model.modules() if type(m) is nn.Linear and "forward" not in m.__dict__]


class Skinny:
    """The linear layers of a model, switched to the faster kernels for decode steps while
    ``with skinny():`` lasts; holds the prepacked bf16 weights between steps."""

    def __init__(self, model: nn.Module):
        self.layers = linears(model)
        bf16_bytes = sum(m.weight.numel() * 2 for m in self.layers if m.weight.dtype == torch.bfloat16)
        self.pack = 0 < bf16_bytes <= PACK_BUDGET and torch.backends.mkldnn.is_available()
        self._packed: dict[int, tuple[tuple, torch.Tensor]] = {}

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        for layer in self.layers:
            layer.forward = types.MethodType(functools.partial(_forward, skinny=self), layer)
        try:
            yield
        finally:
            for layer in self.layers:
                layer.__dict__.pop("forward", None)

    def packed(self, layer: nn.Linear) -> torch.Tensor | None:
        """``layer``'s weight in oneDNN's layout, made once (again if the weight changes)."""
        w = layer.weight
        key = (w.data_ptr(), w._version, tuple(w.shape))
        hit = self._packed.get(id(layer))
        if hit is None or hit[0] != key:
            try:
                hit = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), MAX_ROWS))
            except (RuntimeError, AttributeError):  # a build without oneDNN's linear: stop trying
                self.pack = False
                return None
            self._packed[id(layer)] = hit
        return hit[1]


def _forward(self: nn.Linear, x: torch.Tensor, skinny: Skinny) -> torch.Tensor:
    w = self.weight
    rows = x.numel() // x.shape[-1] if x.dim() else 0
    if (
        not 0 < rows <= MAX_ROWS
        or x.dtype != w.dtype
        or x.device.type != "cpu"
        or torch.is_autocast_enabled("cpu")
        or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
    ):
        return nn.Linear.forward(self, x)
    flat = x.reshape(rows, x.shape[-1])
    if w.dtype == torch.float32:
        if rows == 1:  # a matrix-vector product is the slow case: make it two rows
            flat = torch.cat([flat, flat])
        out = torch.mm(w, flat.t()).t()[:rows]
        if self.bias is not None:
            out = out + self.bias
    elif w.dtype == torch.bfloat16 and skinny.pack and (packed := skinny.packed(self)) is not None:
        out = torch.ops.mkldnn._linear_pointwise(flat, packed, self.bias, "none", [], "")
    else:
        return nn.Linear.forward(self, x)
    return out.reshape(*x.shape[:-1], w.shape[0])
