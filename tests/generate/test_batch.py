"""Continuous batching (generate/batch.py): rows that join a running batch, leave it early, or use
different adapters get exactly the tokens they would get alone."""

from onthejob.data.template import tokenize_prompt
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from onthejob.generate.batch import Batch
from tests.runs import lively_model
from tests.tiny import tiny_tokenizer

PROMPTS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "What is the weather in Paris? It is sunny and 21 degrees."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def add(a, b):"}],
]


def _alone(engine, prompt, params):
    [c] = engine.generate_ids([prompt], params)
    return c.token_ids


def test_rows_joining_and_leaving_match_each_alone():
    tok = tiny_tokenizer("chatml")
    engine = Engine(lively_model(tok, seed=3), tok)
    prompts = [tokenize_prompt(c, tok) for c in PROMPTS]
    lengths = [12, 5, 9]  # the middle row leaves first; rows join at steps 0, 2 and 3
    batch = Batch(engine)
    requests = []
    for step in range(40):
        for i, at in enumerate([0, 2, 3]):
            if step == at:
                requests.append(batch.add(engine.request(prompts[i], SamplingParams(max_new_tokens=lengths[i]))))
        if not batch.running and not batch.waiting and len(requests) == 3:
            break
        batch.step()
    for prompt, n, r in zip(prompts, lengths, requests):
        assert r.finish is not None
        assert r.completion().token_ids == _alone(engine, prompt, SamplingParams(max_new_tokens=n))


def test_seeded_sampling_in_a_batch_matches_alone_and_cancel_drops_the_row():
    tok = tiny_tokenizer("chatml")
    engine = Engine(lively_model(tok, seed=3), tok)
    prompts = [tokenize_prompt(c, tok) for c in PROMPTS]
    params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=7)
    batch = Batch(engine)
    sampled = batch.add(engine.request(prompts[0], params))
    doomed = batch.add(engine.request(prompts[1], SamplingParams(max_new_tokens=50)))
    batch.step()
    doomed.cancelled = True
    while batch.running or batch.waiting:
        batch.step()
    assert doomed.generated == 1 and doomed.finish is None
    assert sampled.completion().token_ids == _alone(engine, prompts[0], params)
