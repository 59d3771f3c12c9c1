"""The five arms on real data: prompting, few-shot, RAG, fine-tuning and both, on ../shared/data/hr-policy.

    python benchmarks/compare_hr_policy.py [--data ../shared/data/hr-policy] [--work /tmp/hr-policy] [--rag-train]

The handbook PDF is the RAG corpus; the token_presence questions (question, reference answer,
tokens the answer must contain) are split by a seeded shuffle into a training two thirds and an
eval third, disjoint by question; a LoRA run is trained on the training part and `ojt compare`
runs the arms on the eval part (few-shot's examples are the training part). Training and
answering use the default settings; ``--rag-train`` trains with the passages the collection
retrieves for each question (``data.rag``, as configs/hr-rag-train.yaml does for the shipped example). Everything goes through the
`ojt` command line, as a user would run it. Takes ~15 minutes on 2 CPU cores (~30 with --rag-train).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

SYSTEM = "You are the HR assistant. Answer from the staff handbook, briefly and precisely."


def run(*args: str, env: dict) -> None:
    print("$ ojt " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "onthejob", *args], check=True, env=env)


def prepare(data: Path, work: Path) -> dict:
    """The split (work/train.jsonl, work/eval.jsonl) and the environment the ``ojt`` commands run in."""
    from onthejob.eval.data import from_token_presence
    from onthejob.fsutil import write_jsonl

    work.mkdir(parents=True, exist_ok=True)
    records = from_token_presence(data / "CSV_files" / "token_presence_HR_Policy.csv")
    for r in records:
        r["messages"].insert(0, {"role": "system", "content": SYSTEM})
        r.pop("document", None)
    questions = sorted({r["messages"][1]["content"] for r in records})
    random.Random(0).shuffle(questions)
    held = set(questions[: len(questions) // 3])  # split by question, so none falls on both sides
    train = [r for r in records if r["messages"][1]["content"] not in held]
    evals = [r for r in records if r["messages"][1]["content"] in held]
    write_jsonl(work / "train.jsonl", ({"messages": r["messages"]} for r in train))
    write_jsonl(work / "eval.jsonl", evals)
    print(f"{len(train)} training and {len(evals)} eval questions", flush=True)
    env = {**os.environ, "ONTHEJOB_HOME": str(work / "home")}
    model_cache = Path(os.environ.get("ONTHEJOB_HOME", Path.home() / ".cache" / "onthejob")) / "models"
    if model_cache.is_dir() and not (work / "home" / "models").exists():
        (work / "home").mkdir(exist_ok=True)
        os.symlink(model_cache, work / "home" / "models")  # reuse the converted default model
    return env


def main() -> int:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(here.parent / "shared" / "data" / "hr-policy"))
    ap.add_argument("--work", default="/tmp/hr-policy")
    ap.add_argument("--rag-train", action="store_true", help="train with retrieved passages (data.rag)")
    ap.add_argument("--arms", default="prompt,few-shot,rag,ft,ft+rag")
    args = ap.parse_args()
    data, work = Path(args.data), Path(args.work)
    env = prepare(data, work)
    run("rag", "index", str(data / "used_documents" / "HR_Policy.pdf"), "--collection", "hr-policy", env=env)
    rag = ["--data.rag.collection", "hr-policy"] if args.rag_train else []
    run("train", "--data", str(work / "train.jsonl"), "--output_dir", str(work / "run"), "--overwrite", *rag, env=env)
    run("compare", "--data", str(work / "eval.jsonl"), "--arms", args.arms, "--run", str(work / "run"),
        "--rag", "hr-policy", "--system", SYSTEM, "--max-new-tokens", "96", "--out", str(work / "report"), env=env)
    summary = json.loads((work / "report" / "report.json").read_text())
    print(json.dumps(summary.get("verdict"), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
