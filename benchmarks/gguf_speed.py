"""Generation speed of an exported GGUF in llama.cpp against onthejob's engine on the same model.

    python benchmarks/gguf_speed.py                       # runs/hr-demo (trained first if missing)
    python benchmarks/gguf_speed.py --run runs/support --questions 16 --max-new-tokens 64

The same model three ways, on the same token prompts (the HR example's eval questions, rendered by
the run's chat template), greedily, each answer exactly --max-new-tokens long (end of turn ignored,
so every side decodes the same number of tokens), with the machine's threads:
- ``onthejob``: ``Engine.generate`` on the run's adapter merged into the base, float32 (the weights
  the f16 GGUF rounds), at batch 1 and batch 8;
- ``llama.cpp f16`` and ``llama.cpp q8_0``: the GGUFs ``ojt export`` writes, at batch 1 through
  ``LlamaCpp`` (what ``ojt eval FILE.gguf`` runs) and at batch 8 through llama.cpp's own batched
  decoding (one ``llama_batch`` holding 8 sequences, as llama.cpp's server does with 8 slots).

Printed: wall seconds, generated tokens per second, and llama.cpp / onthejob at each batch size.
Not a test: the figures depend on the machine; run it on a quiet one (a second process on two
cores slows both several times). Sides run one after the other, never together.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "runs" / "hr-demo"))
    parser.add_argument("--data", default=str(ROOT / "examples" / "hr" / "eval.jsonl"))
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--quants", default="f16,q8_0")
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    run = Path(args.run)
    if not (run / "final").is_dir():
        print(f"training {run} first (configs/hr-demo.yaml)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "onthejob", "train", str(ROOT / "configs" / "hr-demo.yaml"),
                        "--output_dir", str(run)], check=True, cwd=ROOT)

    import torch

    from onthejob.data.template import tokenize_prompt
    from onthejob.eval.data import read_eval
    from onthejob.export.config import ExportConfig
    from onthejob.export.run import run as export
    from onthejob.generate.engine import Engine
    from onthejob.generate.llamacpp import LlamaCpp
    from onthejob.generate.sampling import SamplingParams
    from onthejob.models.merge import merged_model

    torch.set_num_threads(threads)
    items = read_eval(args.data)[: args.questions]
    conversations = [item.messages for item in items]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, ignore_eos=True)
    rows = []
    model, tokenizer = merged_model(run)
    prompts = [tokenize_prompt(c, tokenizer) for c in conversations]
    engine = Engine(model, tokenizer, dtype="float32")
    engine.generate(conversations[:2], SamplingParams(max_new_tokens=4))  # warm-up
    for batch in (1, 8):
        rows.append(("onthejob (float32)", batch, *_timed(lambda b=batch: engine.generate(conversations, params, batch_size=b))))
    del engine, model
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quants.split(","):
            out = Path(tmp) / quant
            export(ExportConfig(run=str(run), quant=quant, out=str(out), check=False), say=lambda _: None)
            [gguf] = out.glob("*.gguf")
            llm = LlamaCpp(gguf, context=2048, threads=threads)
            llm.generate(conversations[:2], SamplingParams(max_new_tokens=4))  # warm-up
            rows.append((f"llama.cpp {quant}", 1, *_timed(lambda: llm.generate(conversations, params))))
            rows.append((f"llama.cpp {quant}", 8, *_timed(lambda: batched(llm, prompts, args.max_new_tokens, 8, threads))))
            del llm
    _print(rows, len(items), args.max_new_tokens, threads)
    return 0


def _timed(fn):
    start = time.perf_counter()
    answers = fn()
    seconds = time.perf_counter() - start
    generated = sum(len(a.token_ids) if hasattr(a, "token_ids") else len(a) for a in answers)
    return seconds, generated


def batched(llm, prompts: list[list[int]], new_tokens: int, rows: int, threads: int) -> list[list[int]]:
    """Greedy answers, ``rows`` sequences decoded together in one llama.cpp batch per step."""

    import llama_cpp
    import numpy as np

    per_seq = max(len(p) for p in prompts) + new_tokens + 8
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = per_seq * rows, per_seq * rows, 512
    params.n_seq_max, params.n_threads, params.n_threads_batch = rows, threads, threads
    params.kv_unified = True
    ctx = llama_cpp.llama_init_from_model(llm.llm.model, params)
    vocab = llama_cpp.llama_n_vocab(llama_cpp.llama_model_get_vocab(llm.llm.model))
    batch = llama_cpp.llama_batch_init(per_seq * rows, 0, rows)
    out: list[list[int]] = []

    def put(i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
        batch.seq_id[i][0], batch.logits[i] = seq, logits

    try:
        for start in range(0, len(prompts), rows):
            group = prompts[start:start + rows]
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            n, last = 0, []
            for seq, prompt in enumerate(group):  # prefill: every prompt in one batch
                for pos, token in enumerate(prompt):
                    put(n, token, pos, seq, pos == len(prompt) - 1)
                    n += 1
                last.append(n - 1)
            batch.n_tokens = n
            answers = [[] for _ in group]
            for step in range(new_tokens):
                if llama_cpp.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed")
                n = 0
                for seq, index in enumerate(last):
                    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(vocab,))
                    token = int(logits.argmax())
                    answers[seq].append(token)
                    put(n, token, len(group[seq]) + step, seq, True)
                    n += 1
                last = list(range(len(group)))
                batch.n_tokens = n
            out += answers
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return out


def _print(rows, questions: int, new_tokens: int, threads: int) -> None:
    print(f"\n{questions} questions, {new_tokens} new tokens each, greedy, {threads} threads\n")
    print("| side | batch | wall s | generated tok/s | vs onthejob at that batch |")
    print("|---|---|---|---|---|")
    ours = {batch: generated / seconds for side, batch, seconds, generated in rows if side.startswith("onthejob")}
    for side, batch, seconds, generated in rows:
        speed = generated / seconds
        ratio = "1.00×" if side.startswith("onthejob") else f"{speed / ours[batch]:.2f}×"
        print(f"| {side} | {batch} | {seconds:.1f} | {speed:.1f} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
