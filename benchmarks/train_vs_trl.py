"""onthejob's training against Hugging Face TRL + PEFT on the same job, side by side.

    python benchmarks/train_vs_trl.py                          # CPU: synthetic + support tickets
    python benchmarks/train_vs_trl.py --data synthetic --steps 4 --rounds 2
    python benchmarks/train_vs_trl.py --device cuda --qlora    # what benchmarks/gpu_check.sh runs

The job: the default model (SmolLM2-135M-Instruct), LoRA r 16 / alpha 32 / dropout 0 on every
linear layer, maximum length 512, AdamW at the same learning rate with a linear decay and no
warm-up, gradient clipping at 1.0, loss on the assistant tokens only, and the same tokens per
optimizer step: 8 examples' worth. TRL takes 8 examples per step (its default batch size); the
packed arms take as many rows of 512 as hold 8 average examples.

Arms: ``trl-default`` (TRL's own defaults: bf16, gradient checkpointing, no packing),
``trl-fp32`` (fp32, no gradient checkpointing: a common CPU setting), ``trl-packing`` (packing
with best-fit decreasing, which TRL runs padding-free, bf16), ``onthejob`` (``ojt train`` with
its defaults), and on CUDA with ``--qlora`` also ``trl-qlora`` (4-bit base through
bitsandbytes). Each arm runs in its own child process (so peak resident memory is its own), the
arms alternate, and each runs ``--rounds`` times; figures are medians over rounds. The first
``--warmup-steps`` optimizer steps of every run are not timed.

Printed per arm: trained (non-padding) tokens/s, peak resident memory (and peak CUDA memory on a
GPU), the loss on 64 held-out examples after the same number of tokens (one function, the same
maths, for every arm), and the model FLOPs utilisation: 4*N FLOPs per trained token for LoRA
(forward 2N + backward through the activations 2N; the frozen weights get no gradient) against a
matmul peak measured here for the dtype the arm computes in. The last line reads exactly

    ratio vs TRL default: speed S.SSx, peak memory M.MMx, loss gap L.LL%

TRL, datasets and bitsandbytes are benchmark dependencies only (``pip install -e .[bench]``).
Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TICKETS = SHARED / "support-tickets" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
MAX_LEN = 512
EXAMPLES_PER_STEP = 8
N_TRAIN, N_EVAL = 512, 64
CPU_ARMS = ["trl-default", "trl-fp32", "trl-packing", "onthejob"]

# ------------------------------------------------------------------------------------------------
# Data: a deterministic synthetic chat set and a real one


WORDS = (
    "the a to of and in for on with at by from about as into like through after over between out "
    "against during without before under around among order account payment invoice refund delivery "
    "address shipment package customer service support team manager policy contract schedule week "
    "month year day time number email phone message request change cancel update check confirm help "
    "problem issue error question answer reason option plan price cost fee balance card bank transfer "
    "please thank you we they it this that these those can will would should could may might must "
    "need want know think see make take give find tell ask work call try use keep leave start stop "
    "new old good bad early late small large long short first last next other same different simple "
    "clear quick easy hard important possible available current final full open closed free extra "
    "because if when while so but or not also only just still already again soon today tomorrow"
).split()


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _text(rng: random.Random, n_words: int) -> str:
    out, left = [], n_words
    while left > 0:
        k = min(left, rng.randint(6, 18))
        out.append(_sentence(rng, k))
        left -= k
    return " ".join(out)


def synthetic(n: int, seed: int) -> list[dict]:
    """n chats: user 10-80 words, assistant 20-200 words, every third with a system prompt."""
    rng = random.Random(seed)
    chats = []
    for i in range(n):
        messages = [{"role": "system", "content": _text(rng, rng.randint(8, 30))}] if i % 3 == 0 else []
        messages.append({"role": "user", "content": _text(rng, rng.randint(10, 80))})
        messages.append({"role": "assistant", "content": _text(rng, rng.randint(20, 200))})
        chats.append({"messages": messages})
    return chats


def tickets(n: int, seed: int) -> list[dict]:
    """n support tickets from ../shared/data, read by onthejob's CSV reader, sampled with a seed."""
    from onthejob.data.readers import read_examples

    result = read_examples(TICKETS, mapping={"instruction": "user", "response": "assistant"})
    examples = [e.to_record() for e in result.examples]
    return random.Random(seed).sample(examples, n)


def datasets(name: str) -> tuple[list[dict], list[dict]]:
    if name == "synthetic":
        return synthetic(N_TRAIN, seed=0), synthetic(N_EVAL, seed=1)
    both = tickets(N_TRAIN + N_EVAL, seed=0)
    return both[:N_TRAIN], both[N_TRAIN:]


# ------------------------------------------------------------------------------------------------
# One arm, in a child process


def peak_rss_gib() -> float:
    """This process's peak resident memory. VmHWM where Linux has it: getrusage's ru_maxrss also
    counts the parent's high-water mark, carried across fork and exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        kib = next((line.split()[1] for line in status.read_text().splitlines() if line.startswith("VmHWM:")), None)
        if kib:
            return int(kib) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def heldout_loss(model, tokenizer, chats: list[dict], device) -> float:
    """Mean cross-entropy on the assistant tokens of ``chats``: the same function for every arm."""
    import torch

    from onthejob.data.pack import collate_padded
    from onthejob.data.schema import Example
    from onthejob.data.template import tokenize_example

    seqs = [tokenize_example(Example(c["messages"]), tokenizer) for c in chats]
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        for i in range(0, len(seqs), 8):
            batch = {k: v.to(device) for k, v in collate_padded(seqs[i : i + 8], tokenizer.pad_token_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            labels = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels.flatten(), reduction="sum")
            total += loss.item()
            count += int((labels != -100).sum())
    return total / count


def _rows_per_step(chats: list[dict], tokenizer) -> int:
    """Rows of MAX_LEN that hold EXAMPLES_PER_STEP average examples: same tokens per step."""
    from onthejob.data.schema import Example
    from onthejob.data.template import tokenize_example

    mean = statistics.mean(min(len(tokenize_example(Example(c["messages"]), tokenizer).input_ids), MAX_LEN) for c in chats)
    return max(1, round(EXAMPLES_PER_STEP * mean / MAX_LEN))


def run_onthejob(args, train: list[dict], evalset: list[dict], work: Path) -> dict:
    import torch

    from onthejob.models.adapters import load_for_inference
    from onthejob.models.load import load_tokenizer
    from onthejob.train import loop
    from onthejob.train.config import validate

    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in train))
    rows = _rows_per_step(train, load_tokenizer(args.model))
    config = validate({
        "model": args.model,
        "output_dir": str(work / "run"),
        "data": {"train": [{"path": str(data)}], "max_seq_len": MAX_LEN},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "optim": {"lr": args.lr, "schedule": "linear", "warmup_steps": 0, "grad_clip": 1.0},
        "max_steps": args.steps + args.warmup_steps,
        "micro_batch_size": 1,
        "grad_accum": rows,
        "compile": args.compile,
    })
    loop.run(config)
    peak = peak_rss_gib()
    steps = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "tokens" in s]
    timed = steps[args.warmup_steps :]
    tokens, seconds = sum(s["tokens"] for s in timed), sum(s["tokens"] / s["tokens_per_s"] for s in timed)
    loaded = load_for_inference(str(work / "run" / "final"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "tokens_per_s": tokens / seconds,
        "trained_tokens": sum(s["tokens"] for s in steps),
        "peak_rss_gib": peak,
        "peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "train_loss": steps[-1]["loss"],
        "heldout_loss": heldout_loss(loaded.model.to(device), loaded.tokenizer, evalset, device),
        "bf16": loop.use_bf16(config, device),
        "rows_per_step": rows,
    }


def run_trl(arm: str, args, train: list[dict], evalset: list[dict], work: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from onthejob.models.load import load_tokenizer
    from onthejob.models.load import resolve

    cuda = torch.cuda.is_available()
    init = {}
    if arm == "trl-qlora":
        from transformers import BitsAndBytesConfig

        init["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    tokenizer = load_tokenizer(args.model)
    # Prompt-completion form: TRL then trains on the completion (the assistant answer) only.
    rows = [{"prompt": c["messages"][:-1], "completion": c["messages"][-1:]} for c in train]
    packing = arm == "trl-packing"
    per_step = _rows_per_step(train, tokenizer) if packing else EXAMPLES_PER_STEP
    options = {
        "trl-default": {},
        "trl-fp32": {"bf16": False, "gradient_checkpointing": False},
        "trl-packing": {"packing": True},
        "trl-qlora": {},
    }[arm]
    sft = SFTConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=per_step,
        gradient_accumulation_steps=1,
        max_length=MAX_LEN,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=1.0,
        max_steps=args.steps + args.warmup_steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not cuda,
        seed=0,
        model_init_kwargs=init or None,
        **options,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=resolve(args.model), args=sft, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=lora)

    batch_tokens: list[int] = []
    collate = trainer.data_collator

    def counting(examples):
        batch = collate(examples)
        mask = batch.get("attention_mask")
        batch_tokens.append(int(mask.sum()) if mask is not None else batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if not ends:
                ends.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    trainer.add_callback(Clock())
    trainer.train()
    peak = peak_rss_gib()
    n = len(ends) - 1
    seconds = ends[-1] - ends[args.warmup_steps]
    tokens = sum(batch_tokens[args.warmup_steps : n])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    device = torch.device("cuda" if cuda else "cpu")
    return {
        "tokens_per_s": tokens / seconds,
        "trained_tokens": sum(batch_tokens[:n]),
        "peak_rss_gib": peak,
        "peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "train_loss": losses[-1],
        "heldout_loss": heldout_loss(trainer.model, tokenizer, evalset, device),
        "bf16": bool(sft.bf16),
        "rows_per_step": per_step,
    }


def worker(args) -> None:
    train, evalset = datasets(args.data)
    with tempfile.TemporaryDirectory(prefix="ojt-bench-") as tmp:
        if args.worker == "onthejob":
            result = run_onthejob(args, train, evalset, Path(tmp))
        else:
            result = run_trl(args.worker, args, train, evalset, Path(tmp))
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------
# The side-by-side run


def matmul_peak(dtype_name: str, device: str) -> float:
    """FLOP/s of the best large matmul in ``dtype_name`` on ``device`` (onthejob's own probe)."""
    import torch

    from onthejob.train.plan import matmul_peak as probe

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    return probe(dtype, 2.0, device=device, n=8192 if device == "cuda" else 2048)


def spawn(arm: str, data: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", arm, "--data", data, "--steps", str(args.steps),
           "--warmup-steps", str(args.warmup_steps), "--lr", str(args.lr), "--model", args.model]
    if args.compile:
        cmd.append("--compile")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{arm} on {data} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    print(f"  {arm:12} {result['tokens_per_s']:7.1f} tokens/s  peak {result['peak_rss_gib']:.2f} GiB  "
          f"held-out loss {result['heldout_loss']:.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return result


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["synthetic", "tickets", "both"], default="both")
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per run")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed optimizer steps at the start of each run")
    p.add_argument("--rounds", type=int, default=2, help="runs of every arm, alternating")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--arms", nargs="+", default=None, help=f"default: {' '.join(CPU_ARMS)} (+ trl-qlora with --qlora)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--qlora", action="store_true", help="add TRL + PEFT with a 4-bit base (CUDA, bitsandbytes)")
    p.add_argument("--compile", action="store_true", help="onthejob with compile: true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if args.data != "synthetic" and not TICKETS.is_file():
        print(f"{TICKETS} is absent: running the synthetic set only")
        args.data = "synthetic"
    import torch

    from transformers import AutoConfig

    from onthejob.models.load import resolve
    from onthejob.train.plan import Shape

    arms = args.arms or CPU_ARMS + (["trl-qlora"] if args.qlora else [])
    # From the config (test_plan checks it against the loaded model): the parent stays small.
    n_params = Shape.of(AutoConfig.from_pretrained(resolve(args.model))).params
    peaks = {d: matmul_peak(d, args.device) for d in ("bf16", "fp32")}
    print(f"model {args.model}: {n_params / 1e6:.1f}M parameters; {torch.get_num_threads()} threads on {args.device}; "
          f"matmul peak bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s, fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s")
    names = ["synthetic", "tickets"] if args.data == "both" else [args.data]
    summary = {}
    for data in names:
        print(f"\n{data}: {N_TRAIN} training and {N_EVAL} held-out examples, {args.steps} timed steps after "
              f"{args.warmup_steps} warm-up, {args.rounds} rounds, arms alternating", flush=True)
        results: dict[str, list[dict]] = {arm: [] for arm in arms}
        for _ in range(args.rounds):
            for arm in arms:
                results[arm].append(spawn(arm, data, args))
        summary[data] = results
        print_table(data, results, peaks, n_params)
    first = summary[names[0]]
    if "onthejob" not in first or "trl-default" not in first:  # --arms without one of them: tables only
        return
    ours, trl = first["onthejob"], first["trl-default"]
    speed = median(ours, "tokens_per_s") / median(trl, "tokens_per_s")
    peak = "peak_cuda_gib" if args.device == "cuda" else "peak_rss_gib"  # on a GPU, the GPU's memory
    memory = median(ours, peak) / median(trl, peak)
    gap = abs(median(ours, "heldout_loss") - median(trl, "heldout_loss")) / median(trl, "heldout_loss")
    print(f"ratio vs TRL default: speed {speed:.2f}x, peak memory {memory:.2f}x, loss gap {gap:.2%}")


def print_table(data: str, results: dict[str, list[dict]], peaks: dict[str, float], n_params: int) -> None:
    ours = results.get("onthejob")
    print(f"\n{data} (medians)")
    print(f"{'arm':12} {'dtype':5} {'rows/step':>9} {'tokens/s':>9} {'peak RSS':>9} {'peak CUDA':>9} {'held-out':>9} {'train':>7} {'MFU':>6} {'onthejob is':>12}")
    for arm, runs in results.items():
        tps = median(runs, "tokens_per_s")
        dtype = "bf16" if runs[0]["bf16"] else "fp32"
        mfu = tps * 4 * n_params / peaks[dtype]
        cuda = f"{median(runs, 'peak_cuda_gib'):.2f}G" if runs[0]["peak_cuda_gib"] is not None else "-"
        faster = f"{median(ours, 'tokens_per_s') / tps:.2f}x" if ours and arm != "onthejob" else ""
        print(f"{arm:12} {dtype:5} {runs[0]['rows_per_step']:9} {tps:9.1f} {median(runs, 'peak_rss_gib'):8.2f}G {cuda:>9} "
              f"{median(runs, 'heldout_loss'):9.4f} {median(runs, 'train_loss'):7.3f} {mfu:6.1%} {faster:>12}")


if __name__ == "__main__":
    main()
