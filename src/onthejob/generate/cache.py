"""The key/value cache, and the per-row tensors a batch decodes with (``DecodeState``).

``GrowingLayer`` is a key/value cache layer that fills a buffer in place instead of growing by
concatenation.

transformers' ``DynamicLayer`` appends each step's keys and values with ``torch.cat``, which copies
the whole cache every step: at batch 8 on a CPU that copying took a third of decoding time.
``GrowingLayer`` keeps keys and values in buffers with room to spare (the engine reserves room
for ``max_new_tokens``), writes each step's new entries into them, and hands the model views of
the filled part. Everything else is ``DynamicLayer``'s: when one of its methods (or the server's
batch merge) replaces the keys with new tensors, the next ``update`` takes those over.

``DecodeState`` holds what the next decode step needs for the running rows: their next input
ids, attention mask, positions and cache. Rows leave it (``select``), and a state of newly
prefilled rows can be stacked onto a running one (``merge``): prompts are left-padded, so the
newest token of every row sits in the last column and one (b, 1) forward extends them all.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views into buffers with room to grow."""

    def __init__(self, reserve: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.reserve = reserve  # room to allocate beyond the first update (tokens)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._handed: torch.Tensor | None = None  # the keys view last handed out

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, new = self.get_seq_length(), key_states.shape[-2]
        if self.keys is not self._handed or self._buffers[0].shape[-2] < n + new:
            self._reallocate(key_states, value_states, n, n + new + max(self.reserve, (n + new) // 2, 16))
            self.reserve = 0
        keys, values = self._buffers
        keys[..., n : n + new, :] = key_states
        values[..., n : n + new, :] = value_states
        self.keys, self.values = keys[..., : n + new, :], values[..., : n + new, :]
        self._handed = self.keys
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices``, buffers and all."""
        if self.keys is None or self.keys is not self._handed:
            return super().batch_select_indices(indices)
        n = self.get_seq_length()
        self._buffers = (self._buffers[0][indices], self._buffers[1][indices])
        self.keys, self.values = self._buffers[0][..., :n, :], self._buffers[1][..., :n, :]
        self._handed = self.keys

    def reset(self) -> None:
        self._buffers = self._handed = None
        super().reset()

    def _reallocate(self, key_states: torch.Tensor, value_states: torch.Tensor, n: int, capacity: int) -> None:
        """New buffers of ``capacity`` tokens holding the first ``n`` of the current keys/values."""
        buffers = []
        for old, new in ((self.keys, key_states), (self.values, value_states)):
            buf = torch.empty((*new.shape[:-2], capacity, new.shape[-1]), dtype=new.dtype, device=new.device)
            if n:
                buf[..., :n, :] = old
            buffers.append(buf)
        self._buffers = (buffers[0], buffers[1])


def new_cache(model, reserve: int = 0) -> DynamicCache:
    """A ``DynamicCache`` for ``model`` whose full-attention layers are ``GrowingLayer``s with room
    for ``reserve`` tokens beyond the prompt. With the model's config, models that mix sliding-window
    and full attention keep transformers' sliding layers."""
    cache = DynamicCache(config=getattr(model, "config", None))
    cache.layers = [GrowingLayer(reserve) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    if getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:  # no config: layers made on demand
        cache.layer_class_to_replicate = functools.partial(GrowingLayer, reserve)
    return cache


@dataclass
class DecodeState:
    """The running rows' tensors, in batch order."""

    ids: torch.Tensor  # (b, 1): each row's newest token, the next step's input
    mask: torch.Tensor  # (b, past + 1): 1 for real tokens, 0 for left padding
    pos: torch.Tensor  # (b, 1): the position of ``ids``; counts real tokens only
    cache: DynamicCache

    def select(self, keep: list[int], *, cut_padding: bool = False) -> DecodeState:
        """The rows ``keep`` (indexes, in order). ``cut_padding`` also drops the columns that are
        padding for every remaining row (they cost compute on every step)."""
        index = torch.tensor(keep, device=self.ids.device)
        self.cache.batch_select_indices(index)
        state = DecodeState(self.ids[index], self.mask[index], self.pos[index], self.cache)
        dead = int((state.mask.sum(0) == 0).long().cumprod(0).sum()) if cut_padding else 0
        if dead and mergeable(state.cache):
            state.mask = state.mask[:, dead:]
            for layer in state.cache.layers:
                layer.keys, layer.values = layer.keys[..., dead:, :], layer.values[..., dead:, :]
        return state

    def merge(self, other: DecodeState) -> DecodeState:
        """Both states' rows stacked (self's first), the shorter past left-padded with masked zeros."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for la, lb in zip(self.cache.layers, other.cache.layers):  # keys/values: (b, heads, past, dim)
            la.keys = torch.cat([_pad_left(la.keys, width - 1, -2), _pad_left(lb.keys, width - 1, -2)])
            la.values = torch.cat([_pad_left(la.values, width - 1, -2), _pad_left(lb.values, width - 1, -2)])
        mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(other.mask, width, 1)])
        return DecodeState(torch.cat([self.ids, other.ids]), mask, torch.cat([self.pos, other.pos]), self.cache)


def mergeable(cache: DynamicCache) -> bool:
    """Can rows be stacked or trimmed? Not for sliding-window layers, which roll their buffers."""
    return all(type(layer) in (DynamicLayer, GrowingLayer) and layer.is_initialized for layer in cache.layers)


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``t`` left-padded with zeros along ``dim`` to ``width``."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
