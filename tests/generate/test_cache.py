"""GrowingLayer: the same keys and values as transformers' DynamicLayer, written in place."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from onthejob.generate.cache import GrowingLayer, new_cache
from tests.tiny import tiny_model, tiny_tokenizer


def _steps(seed=0, batch=3, prefill=5, steps=40):
    g = torch.Generator().manual_seed(seed)
    yield torch.randn(batch, 2, prefill, 4, generator=g), torch.randn(batch, 2, prefill, 4, generator=g)
    for _ in range(steps):
        yield torch.randn(batch, 2, 1, 4, generator=g), torch.randn(batch, 2, 1, 4, generator=g)


def test_growing_layer_returns_what_concatenation_would():
    plain, growing = DynamicLayer(), GrowingLayer(reserve=8)  # 40 steps outgrow the reserve
    buffers = set()
    for k, v in _steps():
        want, got = plain.update(k, v), growing.update(k, v)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        buffers.add(growing._buffers[0].data_ptr())
    assert growing.get_seq_length() == plain.get_seq_length() == 45
    assert 1 < len(buffers) < 10  # grew a few times, not once per step


def test_dropping_rows_and_replaced_keys_are_followed():
    plain, growing = DynamicLayer(), GrowingLayer(reserve=64)
    steps = _steps(steps=6)
    for _ in range(4):
        k, v = next(steps)
        plain.update(k, v), growing.update(k, v)
    keep = torch.tensor([0, 2])
    plain.batch_select_indices(keep), growing.batch_select_indices(keep)
    for layer in (plain, growing):  # what the server does to cut padding columns
        layer.keys, layer.values = layer.keys[..., 1:, :], layer.values[..., 1:, :]
    for k, v in steps:
        want, got = plain.update(k[keep], v[keep]), growing.update(k[keep], v[keep])
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_new_cache_swaps_in_growing_layers_and_the_model_output_is_unchanged():
    model = tiny_model(tiny_tokenizer()).eval()
    ids = torch.randint(5, model.config.vocab_size, (2, 6))
    outs = []
    for cache in (new_cache(model, reserve=4), DynamicCache(config=model.config)):
        with torch.no_grad():
            model(input_ids=ids, use_cache=True, cache=cache)
            outs.append(model(input_ids=ids[:, :1], use_cache=True, cache=cache).logits)
    assert all(type(layer) is GrowingLayer for layer in new_cache(model).layers)
    torch.testing.assert_close(outs[0], outs[1])
