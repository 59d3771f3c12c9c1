"""Replay: mix the base model's own answers to general prompts into training, against forgetting.

    ojt train configs/hr-demo.yaml --data.replay '{n: 100}'

Fine-tuning on a few hundred narrow examples pulls a small model towards them everywhere: asked
what 7 x 8 is, an HR-tuned model may answer with a policy. Self-distillation keeps the rest of its
behaviour where it was: before training, the base model answers ``n`` general prompts (the 200
shipped in ``onthejob/data/replay_prompts.jsonl``, or ``data.replay.prompts``), greedily, with the
training data's system prompt when it has one; those answers join the training examples, so the
tuned model is also trained to answer general questions as the base did. The answers are the
base's own, so nothing new is taught; an answer cut off at ``max_new_tokens`` is left out, since
training on it would teach stopping mid-sentence.

The examples are written to ``RUN/replay.jsonl`` (what was mixed in, for a reader), and a resumed
run reads them back instead of generating again. The general-skills probe of ``ojt eval`` is a
different set of questions, so replay cannot flatter it.
"""

from __future__ import annotations

import random
from pathlib import Path

from onthejob.data.files import json_records
from onthejob.data.schema import Example
from onthejob.errors import ConfigError, DataError
from onthejob.train.config import ReplayConfig

PROMPTS = Path(__file__).resolve().parents[1] / "data" / "replay_prompts.jsonl"
FILE = "replay.jsonl"  # in the run folder
BATCH = 16


def read_prompts(path: str | Path) -> list[list[dict]]:
    """The conversations of a prompts file, each ending in a user turn; DataError names path:line."""
    source = str(path)
    prompts = []
    for record in json_records(Path(path), source):
        if not record.ok:
            raise DataError(str(next(p for p in record.problems if p.severity == "error")))
        messages = record.value.get("messages") if isinstance(record.value, dict) else None
        if (not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages)
                or messages[-1].get("role") != "user" or not isinstance(messages[-1].get("content"), str)):
            raise DataError(f"{source}:{record.line}: a replay prompt is {{\"messages\": [...]}} ending in a user message",
                            fix='write e.g. {"messages": [{"role": "user", "content": "What is 2 + 2?"}]}')
        prompts.append([m for m in messages if m.get("role") != "system"])
    if not prompts:
        raise DataError(f"{source}: no replay prompts", fix="write one prompt per line")
    return prompts


def replay_examples(settings: ReplayConfig, model, tokenizer, *, system: str | None, seed: int,
                    run_dir: Path | None = None, say=print) -> list[Example]:
    """``settings.n`` examples answered by ``model`` (the base, before any adapter), or those a
    previous start of the run wrote into ``run_dir`` (``save``)."""
    saved = run_dir / FILE if run_dir is not None else None
    if saved is not None and saved.is_file():
        return [Example(r.value["messages"], source=str(saved), line=r.line) for r in json_records(saved, str(saved)) if r.ok]
    source = settings.prompts or PROMPTS
    prompts = read_prompts(source)
    if settings.n > len(prompts):
        raise ConfigError(f"data.replay.n is {settings.n} but {source} holds {len(prompts)} prompts",
                          fix=f"lower data.replay.n to {len(prompts)} or give more prompts with data.replay.prompts")
    chosen = random.Random(seed).sample(prompts, settings.n)
    conversations = [([{"role": "system", "content": system}] if system else []) + p for p in chosen]
    say(f"replay: the base model answers {settings.n} general prompts to mix into training ...")
    completions = _answers(model, tokenizer, conversations, settings.max_new_tokens)
    kept = [c + [{"role": "assistant", "content": done.text.strip()}] for c, done in zip(conversations, completions)
            if done.finish_reason == "stop" and done.text.strip()]
    say(f"replay: {len(kept)} answers mixed in ({settings.n - len(kept)} left out: cut at {settings.max_new_tokens} tokens or empty)")
    return [Example(m, source=FILE, line=i) for i, m in enumerate(kept, 1)]


def save(run_dir: Path, examples: list[Example]) -> None:
    """Write the replayed examples into the run folder (once it is a run: after run.json)."""
    from onthejob.fsutil import write_jsonl

    write_jsonl(run_dir / FILE, (e.to_record() for e in examples))


def _answers(model, tokenizer, conversations, max_new_tokens: int):
    from onthejob.generate.engine import Engine
    from onthejob.generate.sampling import SamplingParams

    was_training = model.training
    model.eval()
    try:
        return Engine(model, tokenizer).generate(conversations, SamplingParams(max_new_tokens=max_new_tokens, seed=0),
                                                 batch_size=BATCH)
    finally:
        model.train(was_training)
