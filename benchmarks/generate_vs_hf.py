"""Generation speed: onthejob's ``Engine`` against plain Hugging Face ``model.generate``.

    python benchmarks/generate_vs_hf.py                        # default model, 128 new tokens, 3 reps
    python benchmarks/generate_vs_hf.py --reps 1 --new-tokens 16 --dtypes float32   # quicker
    python benchmarks/generate_vs_hf.py --threads 1   # on a machine busy with other work
    python benchmarks/generate_vs_hf.py --batch-sizes 8 --stop-at-eos   # + rows ending at end-of-turn

Both sides run the same model (the embedded default, loaded offline), the same token ids and the
same thread count under ``torch.inference_mode()``: greedy decoding of exactly ``--new-tokens``
tokens per prompt (end-of-turn stopping is off on both sides, so no row ends early), at batch
size 1 (one mid-length prompt) and 8 (eight chat prompts of varied length, left-padded for HF
with an attention mask), with float32 weights and with the weights cast to bfloat16. Each setting
gets one untimed warm-up per side, then ``--reps`` timed repetitions alternating HF and engine.
Prints per setting the median generated tokens/s (new tokens across the batch / wall seconds) of
each side, their ratio engine/HF, and how many rows' greedy token ids agree (float32 should agree
on every row; bf16 rounding may tip a near-tie). Not a test: numbers depend on the machine, and
on a machine whose cores are busy elsewhere more threads than free cores make both sides several
times slower and very noisy (OpenMP threads wait on each other), hence ``--threads``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from onthejob.data.template import tokenize_prompt
from onthejob.models.load import load_model
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams

CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "user", "content": "How do I boil an egg?"}],
    [{"role": "user", "content": "Write a haiku about a printer that will not print."}],
    [{"role": "system", "content": "You are a concise assistant for an HR department."},
     {"role": "user", "content": "How many days of annual leave do new employees get, and can unused "
                                 "days be carried over into the next year?"}],
    [{"role": "user", "content": "What is the difference between a list and a tuple in Python? Give an "
                                 "example of when each is the better choice, and mention mutability."}],
    [{"role": "user", "content": "My laptop will not connect to the office Wi-Fi."},
     {"role": "assistant", "content": "Have you tried forgetting the network and joining it again?"},
     {"role": "user", "content": "Yes, and it still fails. The password is right and my phone connects."}],
    [{"role": "user", "content": "Summarise this paragraph in one sentence: The quarterly report shows "
                                 "that sales grew by twelve percent, mostly thanks to the new product line "
                                 "launched in spring, while costs rose by only four percent because the "
                                 "team renegotiated supplier contracts and cut travel. The board expects "
                                 "the trend to continue but warns that currency changes could hurt exports."}],
    [{"role": "system", "content": "Answer as a patient teacher who explains every step."},
     {"role": "user", "content": "Explain, step by step, how a bill becomes a law in a parliamentary "
                                 "democracy. Cover the first reading, the committee stage, the debates, "
                                 "the votes in both chambers, amendments going back and forth, and royal "
                                 "or presidential assent, and say briefly why each stage exists."}],
]
SINGLE = 3  # the batch-1 prompt: one of middling length


def hf_generate(model, batch: dict, new_tokens: int, pad_id: int, stops: list[int] | None) -> list[tuple[list[int], int]]:
    """(token ids without the stop token, tokens computed) per row."""
    out = model.generate(
        **batch, do_sample=False, max_new_tokens=new_tokens,
        eos_token_id=stops, pad_token_id=pad_id,  # stops None: every row runs the full length
    )
    rows = out[:, batch["input_ids"].shape[1]:].tolist()
    if not stops:
        return [(row, len(row)) for row in rows]
    cut = [next((i for i, t in enumerate(row) if t in stops), None) for row in rows]
    return [(row, len(row)) if c is None else (row[:c], c + 1) for row, c in zip(rows, cut)]


def engine_generate(engine: Engine, prompts: list[list[int]], new_tokens: int, stop: bool) -> list[tuple[list[int], int]]:
    params = SamplingParams(max_new_tokens=new_tokens, ignore_eos=not stop)
    done = engine.generate_ids(prompts, params)
    return [(c.token_ids, len(c.token_ids) + (c.finish_reason == "stop")) for c in done]


def timed(fn) -> tuple[float, list[list[int]]]:
    t0 = time.perf_counter()
    with torch.inference_mode():
        ids = fn()
    return time.perf_counter() - t0, ids


def bench(model, tokenizer, prompts: list[list[int]], new_tokens: int, reps: int, stop: bool = False) -> dict:
    """Median tokens/s of each side and the count of rows whose token ids agree. With ``stop``,
    rows end at their end-of-turn token and only the tokens each row needed are counted: HF
    keeps finished rows in the batch (padding them) until the last one ends, the engine drops
    them."""
    batch = tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")  # left-padded
    # Engine dtype "float32" means no autocast: the weights run in whatever dtype they are in, as
    # they do in HF generate (bf16 autocast over bf16 weights would only add casts).
    engine = Engine(model, tokenizer, dtype="float32")
    stops = sorted(engine.stop_ids) if stop else None
    sides = {
        "hf": lambda: hf_generate(model, batch, new_tokens, tokenizer.pad_token_id, stops),
        "engine": lambda: engine_generate(engine, prompts, new_tokens, stop),
    }
    outputs = {name: timed(fn)[1] for name, fn in sides.items()}  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(reps):
        for name, fn in sides.items():
            took, outputs[name] = timed(fn)
            seconds[name].append(took)
    for name, out in outputs.items():
        if not stop and any(n != new_tokens for _, n in out):
            raise SystemExit(f"{name} generated {[n for _, n in out]} tokens, not {new_tokens} per row")
    tokens = {name: sum(n for _, n in out) for name, out in outputs.items()}
    return {
        **{name: tokens[name] / statistics.median(s) for name, s in seconds.items()},
        "agree": sum(a[0] == b[0] for a, b in zip(outputs["hf"], outputs["engine"])),
        "rows": len(prompts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per side and setting")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens generated per prompt")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], choices=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, both sides")
    parser.add_argument("--stop-at-eos", action="store_true",
                        help="also the realistic case: rows end at their end-of-turn token (at most --new-tokens)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    models = {}  # each dtype loaded on its own: casting fp32 -> bf16 -> fp32 would lose precision
    for dtype in args.dtypes:
        models[dtype], tokenizer = load_model(args.model, dtype=getattr(torch, dtype))
    tokenizer.padding_side = "left"
    prompts = [tokenize_prompt(c, tokenizer) for c in CONVERSATIONS]
    print(f"{args.model}: prompts of {sorted(len(p) for p in prompts)} tokens, {args.new_tokens} new tokens "
          f"each, greedy, {args.threads} threads, median of {args.reps} reps\n")
    print(f"{'setting':12} {'HF tok/s':>9} {'engine tok/s':>13} {'engine/HF':>10} {'rows agree':>11}")
    ratios = {}
    for size in args.batch_sizes:
        for dtype, model in models.items():
            chosen = [prompts[SINGLE]] if size == 1 else prompts
            r = bench(model, tokenizer, chosen, args.new_tokens, args.reps)
            setting = f"batch{size} {'fp32' if dtype == 'float32' else 'bf16'}"
            ratios[setting] = r["engine"] / r["hf"]
            print(f"{setting:12} {r['hf']:9.1f} {r['engine']:13.1f} {ratios[setting]:9.2f}x "
                  f"{r['agree']:>8}/{r['rows']}", flush=True)
    if args.stop_at_eos:
        print("\nrows end at end-of-turn (tokens/s counts the tokens each row needed)")
        for dtype, model in models.items():
            r = bench(model, tokenizer, prompts, args.new_tokens, args.reps, stop=True)
            setting = f"batch8 {'fp32' if dtype == 'float32' else 'bf16'} eos"
            ratios[setting] = r["engine"] / r["hf"]
            print(f"{setting:12} {r['hf']:9.1f} {r['engine']:13.1f} {ratios[setting]:9.2f}x "
                  f"{r['agree']:>8}/{r['rows']}", flush=True)
    print("\nratio vs HF generate: " + ", ".join(f"{s} {x:.2f}x" for s, x in ratios.items()))


if __name__ == "__main__":
    main()
