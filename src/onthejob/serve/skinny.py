"""Linear layers for decode steps on a CPU: a few rows against a large float32 weight.

A decode step multiplies a handful of rows (one per sequence in the batch) by every weight of the
model, so its time is the time to stream the weights from memory. For x (m, in) and W (out, in),
``nn.Linear`` computes x @ W.T, and for m <= 16 MKL streams W at a fraction of the bandwidth that
W @ x.T reaches; for one row, a matrix-vector product, it is slower still than two rows (measured
on 2 cores, per 1536 x 576 weight out of cache: 1 row 262 us vs 112 us as W @ [x; x].T, 2 rows
411 vs 108, 8 rows 398 vs 321). The products are the same, summed in another order: results agree
to float32 rounding. bf16 weights gain nothing this way and keep ``nn.Linear``'s path.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from torch import nn

MAX_ROWS = 16  # above this x @ W.T is as fast (and at 17 rows MKL sums in the same order)


def linears(model: nn.Module) -> list[nn.Linear]:
    """The plain ``nn.Linear`` layers of ``model`` whose forward nobody has replaced."""
    return [m for m in model.modules() if type(m) is nn.Linear and "forward" not in m.__dict__]


@contextlib.contextmanager
def skinny(layers: list[nn.Linear]) -> Iterator[None]:
    """Within the block, ``layers`` multiply a few float32 rows as W @ x.T (see the module doc)."""
    for layer in layers:
        layer.forward = types.MethodType(_forward, layer)
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


def _forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    rows = x.numel() // x.shape[-1] if x.dim() else 0
    if (
        not 0 < rows <= MAX_ROWS
        or x.dtype != torch.float32
        or w.dtype != torch.float32
        or x.device.type != "cpu"
        or torch.is_autocast_enabled("cpu")
        or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
    ):
        return nn.Linear.forward(self, x)
    flat = x.reshape(rows, x.shape[-1])
    if rows == 1:  # a matrix-vector product is the slow case: make it two rows
        flat = torch.cat([flat, flat])
    out = torch.mm(w, flat.t()).t()[:rows]
    if self.bias is not None:
        out = out + self.bias
    return out.reshape(*x.shape[:-1], w.shape[0])
