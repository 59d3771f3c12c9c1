"""Paraphrase augmentation on the fictional company's facts: are held-out rewordings of the
training questions recalled more often with ``data.augment: {paraphrases: 4}`` than without it?

    python benchmarks/augment_gain.py [--work /tmp/augment-gain] [--seeds 0,1,2] [--epochs 5] [--arms without,repeated,with]

``examples/hr/train.jsonl`` asks about each of its ~43 facts in 7 wordings; here only one wording
per fact is kept (the first example of each distinct answer), so whatever a run knows about other
wordings comes from the augmentation. Per seed, each arm is a LoRA run of the default model with
configs/hr-demo.yaml's settings (``--epochs`` of them, evaluated at the end only):

- ``without``: the one-wording data as it is;
- ``repeated``: the same data weighted to the size of ``with``'s (each fact seen as often, in one
  wording): the control that tells new wordings from more steps;
- ``with``: ``data.augment: {paraphrases: 4}``, the base model rewording its own training questions.

Each run answers the 50 held-out reworded questions of ``examples/hr/eval.jsonl`` (greedy); a
question is recalled when its answer states all of its ``facts``. The table gives the count per
seed and arm, then the mean difference of ``with`` against each other arm. Acceptance: ``with``
recalls at least as many as ``without`` on average over the seeds. The teacher's replies are
cached in WORK/teacher.sqlite3 (greedy: every seed gets the same paraphrases, asked once).
Nine runs: about 10 minutes on a GPU, well over an hour on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
HR = HERE / "examples" / "hr"
PARAPHRASES = 4
ARMS = ("with", "without", "repeated")  # "with" first: "repeated" is weighted to its size


def one_wording(source: Path, out: Path) -> int:
    """The first example of each distinct answer of ``source``, written to ``out``; how many."""
    from onthejob.fsutil import write_jsonl

    seen: dict[str, dict] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            seen.setdefault(record["messages"][-1]["content"], record)
    return write_jsonl(out, seen.values())


def train(work: Path, data: Path, *, arm: str, seed: int, epochs: float, weight: float) -> Path:
    from onthejob.train import config as cfg
    from onthejob.train.loop import run

    overrides = {
        "output_dir": str(work / f"{arm}-seed{seed}"),
        "data": {"train": [{"path": str(data), "weight": weight}], "eval": str(HR / "eval.jsonl")},
        "seed": seed, "epochs": epochs, "eval_every": 0, "save_every": 0,
    }
    if arm == "with":
        overrides["data"]["augment"] = {"paraphrases": PARAPHRASES, "cache": str(work / "teacher.sqlite3")}
    return run(cfg.load(HERE / "configs" / "hr-demo.yaml", overrides), overwrite=True)


def recalled(run_dir: Path) -> int:
    """Eval questions whose answer states every one of their facts."""
    import torch

    from onthejob.eval.data import read_eval
    from onthejob.eval.run import evaluate

    device = "cuda" if torch.cuda.is_available() else None
    result = evaluate(str(run_dir), read_eval(HR / "eval.jsonl"), with_loss=False, device=device, progress=False)
    return sum(row.get("facts_recall") == 1.0 for row in result.per_example)


def table(counts: dict[int, dict[str, int]], arms: list[str], n_eval: int) -> str:
    lines = [f"facts recalled (questions of {n_eval} whose answer states all their facts)",
             "seed  " + "  ".join(f"{a:>9}" for a in arms)]
    lines += [f"{seed:<4}  " + "  ".join(f"{row[a]:>9}" for a in arms) for seed, row in counts.items()]
    lines.append("mean  " + "  ".join(f"{statistics.mean(r[a] for r in counts.values()):>9.1f}" for a in arms))
    for other in (a for a in arms if a != "with" and "with" in arms):
        diffs = [r["with"] - r[other] for r in counts.values()]
        lines.append(f"with - {other}: mean {statistics.mean(diffs):+.1f} (per seed {', '.join(f'{d:+d}' for d in diffs)})")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()), formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[4:]))
    ap.add_argument("--work", default="/tmp/augment-gain", help="runs, data and the teacher cache go here")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    ap.add_argument("--epochs", type=float, default=5, help="passes over each arm's data (configs/hr-demo.yaml: 5)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    args = ap.parse_args()
    from onthejob.fsutil import write_json

    arms = [a for a in ARMS if a in args.arms.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "one-wording.jsonl"
    n = one_wording(HR / "train.jsonl", data)
    n_eval = sum(1 for line in (HR / "eval.jsonl").read_text().splitlines() if line.strip())
    print(f"{n} training examples, one wording per fact; {n_eval} held-out questions", flush=True)
    counts: dict[int, dict[str, int]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        row, size = {}, n * (1 + PARAPHRASES)
        for arm in arms:
            weight = size / n if arm == "repeated" else 1.0
            run_dir = train(work, data, arm=arm, seed=seed, epochs=args.epochs, weight=weight)
            if arm == "with":
                size = n + len((run_dir / "augment.jsonl").read_text(encoding="utf-8").splitlines())
            row[arm] = recalled(run_dir)
            print(f"seed {seed} {arm}: {row[arm]} of {n_eval} recalled", flush=True)
        counts[seed] = row
    write_json(work / "results.json", {"examples": n, "eval": n_eval, "epochs": args.epochs, "recalled": counts})
    print(table(counts, arms, n_eval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
