"""The four-arm compare's speed: onthejob against transformers ``generate`` (and llama.cpp) on the same prompts.

    python benchmarks/compare_speed.py                           # the shared HR handbook, k=5, 96 new tokens
    python benchmarks/compare_speed.py --questions 8 --sides onthejob,hf   # a quicker look

Set-up as ``benchmarks/compare_hr_policy.py`` (the same split of the handbook's questions; its
LoRA run in WORK/run is trained here first if it is missing, and the handbook PDF is indexed as
collection hr-policy). The arms: prompting (the base model with the system prompt), RAG (the base
model with --k passages), fine-tuning (the run) and fine-tuning + RAG. Every side answers the same
token prompts (built once, with one retriever), greedily, up to --max-new-tokens, stopping at the
end of turn, in float32 with the machine's threads.

Sides:
- ``onthejob``: ``evaluate_arms`` exactly as ``ojt compare`` runs it (the four arms in one batch
  on one loaded model, the adapter off per row for the base arms; loading included, the reference
  loss left out), then each arm alone through the engine (the per-arm times).
- ``hf``: per arm, ``model.generate`` on batches of --batch-size prompts sorted by length,
  left-padded with an attention mask; the PEFT model for the fine-tuned arms.
- ``llamacpp``: per arm, one prompt at a time through ``llama-cpp-python`` on --gguf (the f16
  GGUF of the base: ``ojt export`` writes one); base arms only, skipped when either is missing.

Printed per side and arm: wall seconds, prompt and generated tokens, prefill tokens/s (prompt
tokens over the time spent in forwards of more than one token, measured by a hook on the model)
and decode tokens/s (generated tokens over the rest of the wall time); then the ratios
transformers / onthejob for each arm and for the four arms, RAG / prompting for each side, and
how many of the compare's answers equal transformers' (greedy, float32: all of them unless a near
tie tips). Not a test: the figures depend on the
machine; run it on a quiet one (two torch processes on two cores slow each other several times).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare_hr_policy import SYSTEM, prepare  # noqa: E402

ARMS = ["prompt", "rag", "ft", "ft+rag"]


class Timer:
    """Seconds spent in a model's forwards of more than one token (prefill) and of one (decode)."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.prefill = self.decode = 0.0
        self._start = 0.0
        base.register_forward_pre_hook(self._pre, with_kwargs=True)
        base.register_forward_hook(self._post, with_kwargs=True)

    def _pre(self, _module, args, kwargs):
        self._start = time.perf_counter()
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._long = ids is not None and ids.shape[-1] > 1

    def _post(self, _module, _args, _kwargs, _out):
        took = time.perf_counter() - self._start
        if self._long:
            self.prefill += took
        else:
            self.decode += took

    def reset(self):
        self.prefill = self.decode = 0.0


class Fixed:
    """A retriever whose passages were fetched once: every side wraps a question the same way."""

    collection = "hr-policy"

    def __init__(self, prepared: dict[str, tuple]):
        self.prepared = prepared

    def prepare(self, messages):
        return self.prepared[messages[-1]["content"]]


def conversations(items, rag: Fixed | None):
    from onthejob.eval.run import with_system

    out = []
    for item in items:
        conv = with_system(item.messages, SYSTEM, replace=True)
        if rag is not None:
            conv = rag.prepare(conv)[0]
        out.append(conv)  # None: not covered, answered without the model by every side
    return out


def hf_side(model, tokenizer, prompts: list[list[int]], new_tokens: int, batch_size: int, stop_ids: list[int]):
    """model.generate on sorted, left-padded batches: (per prompt generated ids, generated tokens)."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list = [None] * len(prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[j, width - len(prompts[i]) :] = 1
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                                 eos_token_id=stop_ids, pad_token_id=pad)
            for j, i in enumerate(rows):
                new = gen[j, width:].tolist()
                cut = next((t for t, x in enumerate(new) if x in stop_ids), None)
                out[i] = new[:cut] if cut is not None else new
    tokens = sum(len(x) + (1 if len(x) < new_tokens else 0) for x in out)  # the end-of-turn token counts
    return out, tokens


def llamacpp_side(gguf: str, prompts: list[list[int]], new_tokens: int, threads: int):
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=4096, n_threads=threads, n_batch=512, verbose=False)
    out, tokens = [], 0
    for p in prompts:
        llm.reset()
        r = llm.create_completion(prompt=p, max_tokens=new_tokens, temperature=0.0)
        out.append(r["choices"][0]["text"])
        tokens += r["usage"]["completion_tokens"]
    return out, tokens


def row(side: str, arm: str, wall: float, prompt_tokens: int, generated: int, prefill: float | None) -> dict:
    return {"side": side, "arm": arm, "wall": wall, "prompt": prompt_tokens, "generated": generated,
            "prefill_tps": prompt_tokens / prefill if prefill else None,
            "decode_tps": generated / (wall - prefill) if prefill is not None and wall > prefill else None}


def show(r: dict) -> str:
    f = lambda v: f"{v:9.0f}" if v is not None else f"{'-':>9}"  # noqa: E731
    generated = f"{r['generated']:6d}" if r["generated"] is not None else f"{'-':>6}"
    return f"{r['side']:9} {r['arm']:7} {r['wall']:8.1f} {r['prompt']:8d} {generated} {f(r['prefill_tps'])} {f(r['decode_tps'])}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "hr-policy"))
    ap.add_argument("--work", default="/tmp/hr-policy")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--questions", type=int, default=0, help="the first N eval questions only (0 = all)")
    ap.add_argument("--sides", default="onthejob,hf,llamacpp")
    ap.add_argument("--alone", default="prompt,rag", help="arms onthejob also answers one arm at a time (all: every arm)")
    ap.add_argument("--gguf", help="the base model as an f16 GGUF, for the llama.cpp side")
    args = ap.parse_args()
    data, work = Path(args.data), Path(args.work)
    env = prepare(data, work)
    os.environ["ONTHEJOB_HOME"] = env["ONTHEJOB_HOME"]
    ojt = [sys.executable, "-m", "onthejob"]
    if not (work / "run" / "final").is_dir():
        subprocess.run([*ojt, "train", "--data", str(work / "train.jsonl"), "--output_dir", str(work / "run"), "--overwrite",
                        "--epochs", "3", "--optim.lr", "2e-3", "--data.max_seq_len", "512"], check=True, env=env)
    from onthejob.rag.stores import open_store

    store = open_store(None)
    try:
        indexed = "hr-policy" in [c.name for c in store.list()]
    finally:
        store.close()
    if not indexed:
        subprocess.run([*ojt, "rag", "index", str(data / "used_documents" / "HR_Policy.pdf"), "--collection", "hr-policy"],
                       check=True, env=env)

    from onthejob.data.template import tokenize_prompt
    from onthejob.eval.data import read_eval
    from onthejob.eval.run import Ask, evaluate_arms, with_system
    from onthejob.generate.engine import Engine
    from onthejob.generate.sampling import SamplingParams
    from onthejob.models.adapters import load_for_inference
    from onthejob.rag.answer import Retriever
    from onthejob.rag.config import RetrievalConfig

    items = read_eval(work / "eval.jsonl")
    if args.questions:
        items = items[: args.questions]
    with Retriever(RetrievalConfig(collection="hr-policy", k=args.k)) as retriever:
        prepared = {}
        for item in items:
            conv = with_system(item.messages, SYSTEM, replace=True)
            prepared[conv[-1]["content"]] = retriever.prepare(conv)
    rag = Fixed(prepared)
    run = str(work / "run")
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    sides = args.sides.split(",")
    loaded = load_for_inference(run)
    tok = loaded.tokenizer
    convs = {arm: conversations(items, rag if arm.endswith("rag") else None) for arm in ARMS}
    prompts = {arm: [tokenize_prompt(c, tok) for c in convs[arm] if c is not None] for arm in ARMS}
    print(f"{len(items)} questions, k={args.k}, {args.max_new_tokens} new tokens, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads; prompt tokens per arm: " + ", ".join(f"{a} {sum(map(len, p))}" for a, p in prompts.items()),
          flush=True)
    results, answers = [], {}

    if "onthejob" in sides:
        timer = Timer(loaded.model)
        asks = [Ask("prompting", base=True), Ask("RAG", rag=rag, base=True), Ask("fine-tuning"), Ask("fine-tuning + RAG", rag=rag)]
        start = time.perf_counter()
        evals = evaluate_arms(run, asks, items, params=params, system=SYSTEM, batch_size=args.batch_size, with_loss=False,
                              progress=False)
        wall = time.perf_counter() - start
        results.append(row("onthejob", "4 arms", wall, sum(sum(map(len, p)) for p in prompts.values()), None, None))
        shared_text = {arm: [r["answer"] for r in e.per_example] for arm, e in zip(ARMS, evals)}
        for arm in ARMS:  # the answers of the questions the model was asked (not the not-covered ones)
            answers[("onthejob", arm)] = [t for t, c in zip(shared_text[arm], convs[arm]) if c is not None]
        print(show(results[-1]), flush=True)
        engine = Engine(loaded.model, tok)
        for arm in ARMS if args.alone == "all" else [a for a in ARMS if a in args.alone.split(",")]:
            engine.prefix.clear()
            adapters = None
            if not arm.startswith("ft"):
                from onthejob.generate.request import BASE

                adapters = [BASE] * len(prompts[arm])
            timer.reset()
            start = time.perf_counter()
            out = engine.generate_ids(prompts[arm], params, batch_size=args.batch_size, adapters=adapters)
            wall = time.perf_counter() - start
            results.append(row("onthejob", arm, wall, sum(map(len, prompts[arm])), sum(c.completion_tokens for c in out), timer.prefill))
            print(show(results[-1]), flush=True)
            alone = [c.text for c in out]
            shared = [t for t, c in zip(shared_text[arm], convs[arm]) if c is not None]
            print(f"          {arm}: {sum(a == b for a, b in zip(alone, shared))} of {len(alone)} answers the same in the 4-arm batch", flush=True)
        results[0]["generated"] = None

    if "hf" in sides:
        timer = Timer(loaded.model)
        stops = sorted(Engine(loaded.model, tok).stop_ids)
        for arm in ARMS:
            model = loaded.model
            ctx = model.disable_adapter() if not arm.startswith("ft") else contextlib.nullcontext()
            timer.reset()
            with ctx:
                start = time.perf_counter()
                out, generated = hf_side(model, tok, prompts[arm], args.max_new_tokens, args.batch_size, stops)
                wall = time.perf_counter() - start
            answers[("hf", arm)] = [tok.decode(ids, skip_special_tokens=True) for ids in out]
            results.append(row("hf", arm, wall, sum(map(len, prompts[arm])), generated, timer.prefill))
            print(show(results[-1]), flush=True)

    if "llamacpp" in sides:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            print("llamacpp: skipped, llama-cpp-python is not installed")
        else:
            if not args.gguf:
                print("llamacpp: skipped, no --gguf (an f16 GGUF of the base model)")
            else:
                for arm in ("prompt", "rag"):
                    start = time.perf_counter()
                    _, generated = llamacpp_side(args.gguf, prompts[arm], args.max_new_tokens, torch.get_num_threads())
                    results.append(row("llamacpp", arm, time.perf_counter() - start, sum(map(len, prompts[arm])), generated, None))
                    print(show(results[-1]), flush=True)

    print(f"\n{'side':9} {'arm':7} {'wall s':>8} {'prompt':>8} {'gen':>6} {'prefill/s':>9} {'decode/s':>9}")
    for r in results:
        print(show(r))
    by = {(r["side"], r["arm"]): r["wall"] for r in results}
    print()
    for side in ("onthejob", "hf", "llamacpp"):
        if (side, "prompt") in by and (side, "rag") in by:
            print(f"{side}: RAG arm / prompting arm wall time {by[(side, 'rag')] / by[(side, 'prompt')]:.2f}x")
    if ("hf", "prompt") in by and ("onthejob", "4 arms") in by:
        for arm in ARMS:
            agree = sum(a == b for a, b in zip(answers[("onthejob", arm)], answers[("hf", arm)]))
            alone = f"transformers / onthejob alone {by[('hf', arm)] / by[('onthejob', arm)]:.2f}x; " if ("onthejob", arm) in by else ""
            print(f"{arm}: {alone}{agree} of {len(answers[('hf', arm)])} answers of the 4-arm compare equal transformers'")
        hf_total = sum(by[("hf", a)] for a in ARMS)
        print(f"four arms: transformers {hf_total:.0f} s, onthejob's compare {by[('onthejob', '4 arms')]:.0f} s: "
              f"{hf_total / by[('onthejob', '4 arms')]:.2f}x faster"
              + (f" (each arm alone: {sum(by[('onthejob', a)] for a in ARMS):.0f} s)" if all(("onthejob", a) in by for a in ARMS) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
