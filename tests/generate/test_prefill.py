"""Packed prefill, the prefix cache, chunked joins and decode attention: the same answers as the
padded path, for less work."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from onthejob.generate import prefill
from onthejob.generate.attention import decode_attention
from onthejob.generate.batch import Batch
from onthejob.generate.engine import Engine
from onthejob.generate.prefix import PrefixCache, shared_lengths
from onthejob.generate.request import BASE
from onthejob.generate.sampling import SamplingParams
from tests.runs import lively_model
from tests.tiny import tiny_tokenizer

GREEDY = SamplingParams(max_new_tokens=10)
SHARED = list(range(5, 45))  # a 40-token beginning several prompts share (a system prompt, a passage)


def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    tail = [torch.randint(5, 90, (n,), generator=g).tolist() for n in (3, 17, 1, 30, 9, 25)]
    return [SHARED + tail[0], tail[1], SHARED + tail[2], tail[3] + SHARED, SHARED + tail[4], SHARED[:20] + tail[5], [7]]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer("chatml")


@pytest.fixture(scope="module")
def model(tok):
    return lively_model(tok, seed=5)


def padded(model, tok, ps, params=GREEDY):
    engine = Engine(model, tok)
    engine.packed = False
    return [c.token_ids for c in engine.generate_ids(ps, params)]


def test_packed_prefill_answers_as_padded_and_as_one_at_a_time(model, tok):
    engine = Engine(model, tok)
    assert engine.packed
    ps = prompts()
    together = [c.token_ids for c in engine.generate_ids(ps, GREEDY)]
    assert together == padded(model, tok, ps)
    alone = [Engine(model, tok).generate_ids([p], GREEDY)[0].token_ids for p in ps]
    assert together == alone
    assert len({tuple(t) for t in together}) > 3  # the prompts do get different answers


def test_chunked_prefill_and_prefix_hits_change_nothing(model, tok, monkeypatch):
    ps = prompts()
    expected = padded(model, tok, ps)
    # one prefill of all prompts, 8 tokens per forward
    engine = Engine(model, tok)
    requests = [engine.request(p, GREEDY) for p in ps]
    seen = []
    real = prefill._forward
    monkeypatch.setattr(prefill, "_forward", lambda *a, **k: seen.append(len(a[2])) or real(*a, **k))
    with torch.inference_mode():
        state = prefill.packed_prefill(engine, requests, chunk=8)
    assert max(seen) <= 8  # no forward over 8 tokens
    assert engine.prefix.hits >= 2 * len(SHARED) + 20 - 2  # prompts that begin alike wait for the first one's keys
    assert sum(seen) + engine.prefix.hits == sum(map(len, ps))  # every other token computed once
    batch = Batch(engine, max_rows=len(ps), refill=False)
    batch.running, batch._state = requests, state
    while batch.running:
        batch.step()
    assert [r.completion().token_ids for r in requests] == expected
    # later batches find what earlier ones left: one prompt per batch
    engine2 = Engine(model, tok)
    assert [c.token_ids for c in engine2.generate_ids(ps, GREEDY, batch_size=1)] == expected
    assert engine2.prefix.hits >= 2 * len(SHARED) + 20 - 2


def test_prefix_cache_forgets_keys_once_the_weights_change(tok):
    model = lively_model(tok, seed=6)
    engine = Engine(model, tok)
    p = SHARED + [50, 51, 52]
    engine.generate_ids([p], GREEDY)
    hits = engine.prefix.hits
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # an optimizer step, say: in place
    after = engine.generate_ids([p], GREEDY)[0].token_ids
    assert engine.prefix.hits == hits  # nothing reused across the change
    assert after == Engine(model, tok).generate_ids([p], GREEDY)[0].token_ids


def test_prefix_cache_stays_within_its_budget():
    kv = lambda n: [(torch.zeros(2, n, 4), torch.zeros(2, n, 4))]  # noqa: E731
    one = 2 * 2 * 40 * 4 * 4  # bytes of a 40-token entry
    cache = PrefixCache(budget=2 * one + 10)
    for start in range(5):
        cache.insert(("m", None), list(range(start * 100, start * 100 + 40)), kv(40))
        assert cache.used <= cache.budget
    assert len(cache._entries) == 2  # the oldest went first
    n, past = cache.lookup(("m", None), list(range(400, 440)) + [1])
    assert n == 40 and past[0][0].shape == (2, 40, 4)
    assert cache.lookup(("other", None), list(range(400, 441)))[0] == 0  # another model state: no reuse
    assert cache.lookup(("m", None), list(range(0, 41)))[0] == 0  # evicted
    assert PrefixCache(budget=0).lookup(("m", None), list(range(50)))[0] == 0
    with pytest.raises(ValueError):
        PrefixCache(budget=-1)


def test_shared_lengths():
    assert shared_lengths([[1, 2, 3, 4], [9], [1, 2, 5], [1, 2, 3, 7]]) == [3, 0, 2, 3]


def test_long_prompt_joins_a_running_batch_in_parts(model, tok, monkeypatch):
    long = prompts()[3] + prompts()[1]  # 87 tokens
    short = prompts()[1]
    expected = padded(model, tok, [short, long], SamplingParams(max_new_tokens=12))
    engine = Engine(model, tok, prefix_cache=0)
    warmed = []
    real = engine.warm
    monkeypatch.setattr(engine, "warm", lambda r, n: warmed.append(n) or real(r, n))
    batch = Batch(engine, max_rows=4, refill=True)
    batch.JOIN_TOKENS = 16
    a = batch.add(engine.request(short, SamplingParams(max_new_tokens=12)))
    batch.step()  # the short row runs
    b = batch.add(engine.request(long, SamplingParams(max_new_tokens=12)))
    steps = 0
    while batch.running or batch.waiting:
        batch.step()
        steps += 1
        if b.kv is not None:
            assert b not in batch.running  # parts are prefilled while it waits
    assert len(warmed) >= 4  # 87 tokens in parts of 16 before it joined
    assert [a.completion().token_ids, b.completion().token_ids] == expected


def test_decode_attention_equals_sdpa():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 6, 1, 8, generator=g)
    k, v = torch.randn(3, 2, 11, 8, generator=g), torch.randn(3, 2, 11, 8, generator=g)
    mask = torch.ones(3, 1, 1, 11, dtype=torch.bool)
    mask[0, ..., :4] = False  # a left-padded row
    ours, _ = decode_attention(q, k, v, mask, None)
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), attn_mask=mask)
    torch.testing.assert_close(ours, ref.transpose(1, 2))
    torch.testing.assert_close(decode_attention(q, k, v, None, None)[0],
                               F.scaled_dot_product_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1)).transpose(1, 2))


def test_base_and_adapter_rows_share_a_batch(tok, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = lively_model(tok, seed=7)
    ps = prompts()[:4]
    plain = [c.token_ids for c in Engine(base, tok).generate_ids(ps, GREEDY)]
    peft_model = get_peft_model(lively_model(tok, seed=7), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    tuned = [c.token_ids for c in Engine(peft_model, tok).generate_ids(ps, GREEDY)]
    assert tuned != plain
    engine = Engine(peft_model, tok)
    mixed = engine.generate_ids(ps + ps, GREEDY, adapters=[BASE] * 4 + ["default"] * 4)
    assert [c.token_ids for c in mixed] == plain + tuned
