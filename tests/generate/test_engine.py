import contextlib

import pytest
import torch

from onthejob.data.template import end_of_turn_ids, tokenize_prompt
from onthejob.errors import ConfigError
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from tests.runs import lively_model
from tests.tiny import tiny_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "What is the weather in Paris? It is sunny and 21 degrees."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def add(a, b):"}],
    [{"role": "user", "content": "My printer is broken"}, {"role": "assistant", "content": "Turn it off"},
     {"role": "user", "content": "and on again?"}],
]
GREEDY = SamplingParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer("chatml")


@pytest.fixture(scope="module")
def engine(tok):
    return Engine(lively_model(tok), tok)


@contextlib.contextmanager
def forced(model, script: list[int] | dict[tuple[int, int], int]):
    """Make the model's greedy choice at forward call k (0 = prefill) a given token: a list
    forces every row to script[k], a dict maps (call, batch row) -> token."""
    calls = [0]

    def force(_module, _inputs, logits):  # logits: (b, t, V)
        k = calls[0]
        calls[0] += 1
        out = logits.clone()
        for row in range(out.shape[0]):
            if isinstance(script, list):
                token = script[k] if k < len(script) else None
            else:
                token = script.get((k, row))
            if token is not None:
                out[row, -1, :] = -1e4
                out[row, -1, token] = 1e4
        return out

    handle = model.lm_head.register_forward_hook(force)
    try:
        yield
    finally:
        handle.remove()


def hf_greedy(model, tok, conversation, max_new_tokens):
    ids = torch.tensor([tokenize_prompt(conversation, tok)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    eot = set(end_of_turn_ids(tok))
    return new[:-1] if new and new[-1] in eot else new


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_greedy_equals_hf_generate(template):
    tok = tiny_tokenizer(template)
    model = lively_model(tok, seed=3)
    engine = Engine(model, tok)
    for conversation in CONVERSATIONS[:2]:
        [ours] = engine.generate([conversation], GREEDY)
        assert ours.token_ids == hf_greedy(model, tok, conversation, GREEDY.max_new_tokens)
        assert ours.prompt_tokens == len(tokenize_prompt(conversation, tok))


def test_batch_of_different_lengths_equals_each_alone(engine):
    alone = [engine.generate([c], GREEDY)[0] for c in CONVERSATIONS]
    assert len({tuple(c.token_ids) for c in alone}) > 1  # outputs differ, so the check can fail
    for batch_size in (None, 3):
        batched = engine.generate(CONVERSATIONS, GREEDY, batch_size=batch_size)
        assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
        assert [c.text for c in batched] == [c.text for c in alone]


def test_row_ending_early_leaves_the_batch_and_the_others_are_unchanged(engine, tok, monkeypatch):
    from onthejob.generate import engine as engine_module

    monkeypatch.setattr(engine_module, "_similar_lengths", lambda requests, rows: [requests])  # all four in one batch
    engine = Engine(engine.model, tok, prefix_cache=0)  # one prefill forward: call 3 is the third decode step
    alone = [engine.generate([c], GREEDY)[0] for c in CONVERSATIONS]
    eot = end_of_turn_ids(tok)[0]
    longest = max(range(len(CONVERSATIONS)), key=lambda i: alone[i].prompt_tokens)
    # Batches run longest prompt first, so batch row 0 is the longest conversation.
    with forced(engine.model, {(3, 0): eot}):
        batched = engine.generate(CONVERSATIONS, GREEDY)
    ended = batched[longest]
    assert (ended.finish_reason, ended.completion_tokens) == ("stop", 4)
    assert ended.token_ids == alone[longest].token_ids[:3]
    for i, completion in enumerate(batched):
        if i != longest:
            assert completion.token_ids == alone[i].token_ids
            assert completion.finish_reason == "length"


def test_stops_at_end_of_turn(engine, tok):
    words = tok.encode(" the answer is 42", add_special_tokens=False)
    with forced(engine.model, [*words, end_of_turn_ids(tok)[0], *words]):
        [c] = engine.generate(CONVERSATIONS[:1], GREEDY)
    assert (c.text, c.finish_reason) == (" the answer is 42", "stop")
    assert c.token_ids == words
    assert c.completion_tokens == len(words) + 1


def test_ignore_eos_runs_to_max_new_tokens(engine, tok):
    words = tok.encode(" the answer is 42", add_special_tokens=False)
    eot = end_of_turn_ids(tok)[0]
    script = [*words, eot, *words]
    params = SamplingParams(max_new_tokens=len(script), ignore_eos=True)
    with forced(engine.model, script):
        [c] = engine.generate(CONVERSATIONS[:1], params)
    with forced(engine.model, script):
        deltas = list(engine.stream(CONVERSATIONS[0], params))
    assert (c.finish_reason, c.completion_tokens) == ("length", len(script))
    assert c.token_ids == script
    assert c.text == " the answer is 42 the answer is 42"  # the special token is not text
    assert "".join(deltas) == c.text


def test_max_new_tokens_gives_length(engine):
    [c] = engine.generate(CONVERSATIONS[:1], SamplingParams(max_new_tokens=5))
    assert (c.finish_reason, c.completion_tokens, len(c.token_ids)) == ("length", 5, 5)


def test_stop_strings_trim_the_text_and_stream_never_shows_them(engine, tok):
    ids = tok.encode("Thanks, the answer is 42. Hello again", add_special_tokens=False)
    params = SamplingParams(max_new_tokens=40, stop=["42.", "zzz"])
    with forced(engine.model, ids):
        [c] = engine.generate(CONVERSATIONS[:1], params)
    with forced(engine.model, ids):
        deltas = list(engine.stream(CONVERSATIONS[0], params))
    assert (c.text, c.finish_reason) == ("Thanks, the answer is ", "stop")
    assert "".join(deltas) == c.text
    assert not any("4" in d for d in deltas)


def test_multibyte_characters_stream_whole(engine, tok):
    text = "héllo 日本語 😀!"
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > len(text)  # byte-level: characters span several tokens
    script = [*ids, end_of_turn_ids(tok)[0]]
    with forced(engine.model, script):
        deltas = list(engine.stream(CONVERSATIONS[0], SamplingParams(max_new_tokens=50)))
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_stream_concatenation_equals_generate(engine):
    for conversation in CONVERSATIONS[:2]:
        [c] = engine.generate([conversation], GREEDY)
        deltas = []
        for delta in engine.stream(conversation, GREEDY):
            assert not torch.is_inference_mode_enabled()  # not leaked to the caller between steps
            deltas.append(delta)
        assert "".join(deltas) == c.text


def test_seed_repeats_sampling(engine):
    def sample(seed):
        params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=seed)
        return [c.token_ids for c in engine.generate(CONVERSATIONS, params, batch_size=2)]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_tiny_top_p_is_greedy(engine):
    params = SamplingParams(max_new_tokens=12, temperature=1.5, top_p=1e-6, seed=0)
    assert [c.token_ids for c in engine.generate(CONVERSATIONS, params)] == \
        [c.token_ids for c in engine.generate(CONVERSATIONS, GREEDY)]


def test_peft_model_matches_hf_generate(tok):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = lively_model(tok, seed=5)
    plain = Engine(base, tok).generate(CONVERSATIONS[:1], GREEDY)[0]
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    [ours] = Engine(model, tok).generate(CONVERSATIONS[:1], GREEDY)
    assert ours.token_ids == hf_greedy(model, tok, CONVERSATIONS[0], GREEDY.max_new_tokens)
    assert ours.token_ids != plain.token_ids  # the adapter is really in the forward pass


def test_training_mode_is_restored(tok):
    model = lively_model(tok)
    model.train()
    Engine(model, tok).generate(CONVERSATIONS[:1], SamplingParams(max_new_tokens=2))
    assert model.training


def test_bf16_autocast_computes_in_bf16_close_to_float32(tok):
    model = tiny_model_for_bf16(tok)
    seen = []
    handle = model.lm_head.register_forward_hook(lambda _m, _i, out: seen.append(out[:, -1].detach().clone()))
    try:
        [bf16] = Engine(model, tok, dtype="bfloat16").generate(CONVERSATIONS[:1], GREEDY)
        [fp32] = Engine(model, tok, dtype="float32").generate(CONVERSATIONS[:1], GREEDY)
    finally:
        handle.remove()
    steps = GREEDY.max_new_tokens
    assert [t.dtype for t in seen] == [torch.bfloat16] * steps + [torch.float32] * steps  # autocast is really on
    first_bf16, first_fp32 = seen[0].float(), seen[steps]  # the same prompt's first-token logits, (1, V)
    spread = (first_fp32.max() - first_fp32.min()).item()
    assert (first_bf16 - first_fp32).abs().max().item() < 0.05 * spread
    assert bf16.token_ids[:3] == fp32.token_ids[:3]  # the top tokens are far apart: rounding cannot swap them


def tiny_model_for_bf16(tok):
    """A tiny model whose greedy choices are clear (a large margin between the top two logits at
    each of the first steps), so bf16 rounding cannot tip them."""
    for seed in range(20):
        model = lively_model(tok, seed=seed)
        ids = torch.tensor([tokenize_prompt(CONVERSATIONS[0], tok)])
        with torch.no_grad():
            top = model(ids).logits[0, -1].topk(2).values
        if (top[0] - top[1]).item() > 1.0:
            return model
    raise AssertionError("no tiny model with a clear first choice")


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0),
                                 dict(stop=[""])])
def test_bad_sampling_params_are_config_errors(bad):
    from onthejob.config import validate

    with pytest.raises(ConfigError, match=next(iter(bad))):
        validate(SamplingParams, bad)


def test_prompts_of_very_different_lengths_go_in_separate_batches(engine, tok):
    from onthejob.generate.engine import _similar_lengths

    rows = [engine.request([1] * n, GREEDY) for n in (100, 90, 60, 49, 40, 30, 20, 3)]
    groups = _similar_lengths(rows, 3)
    assert [[r.prompt_tokens for r in g] for g in groups] == [[100, 90, 60], [49, 40, 30], [20], [3]]
