"""Starting from documents, measured on questions others wrote: synthesize training data from the
shared HR handbook, fine-tune on it with the default settings, and compare four arms on all of
h2o's token_presence questions about that handbook, which the synthesis never saw.

    python benchmarks/synth_hr_policy.py [--data ../shared/data/hr-policy] [--work /tmp/synth-hr]
        [--teacher-model NAME | --teacher-url URL --teacher-model NAME]

Steps, each an ``ojt`` command as a user would run it: ``ojt data synth HR_Policy.pdf`` (the
embedded default model as teacher unless one is named), ``ojt data check`` on both files,
``ojt train --data train.jsonl`` and nothing else, ``ojt rag index HR_Policy.pdf``, then
``ojt compare`` with the arms prompt, rag, ft and ft+rag. Takes ~45 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SYSTEM = "You are the HR assistant. Answer from the staff handbook, briefly and precisely."


def run(*args: str, env: dict) -> float:
    print("$ ojt " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "onthejob", *args], check=True, env=env)
    return time.perf_counter() - t0


def main() -> int:
    from onthejob.eval.data import from_token_presence
    from onthejob.fsutil import write_jsonl

    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(here.parent / "shared" / "data" / "hr-policy"))
    ap.add_argument("--work", default="/tmp/synth-hr")
    ap.add_argument("--teacher-model")
    ap.add_argument("--teacher-url")
    args = ap.parse_args()
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ONTHEJOB_HOME": str(work / "home")}
    pdf = str(data / "used_documents" / "HR_Policy.pdf")
    questions = [{**r, "messages": [{"role": "system", "content": SYSTEM}, *r["messages"]]}
                 for r in from_token_presence(data / "CSV_files" / "token_presence_HR_Policy.csv")]
    for r in questions:
        r.pop("document", None)
    write_jsonl(work / "questions.jsonl", questions)
    teacher = [f"--teacher-{k}={v}" for k, v in (("model", args.teacher_model), ("url", args.teacher_url)) if v]
    times = {"synth": run("data", "synth", pdf, "--out", str(work / "train.jsonl"), "--eval-out", str(work / "eval.jsonl"),
                          "--system", SYSTEM, *teacher, env=env)}
    for name in ("train.jsonl", "eval.jsonl"):
        run("data", "check", str(work / name), env=env)
    times["train"] = run("train", "--data", str(work / "train.jsonl"), "--output_dir", str(work / "run"), "--overwrite", env=env)
    run("rag", "index", pdf, "--collection", "hr-policy", env=env)
    times["compare"] = run("compare", "--data", str(work / "questions.jsonl"), "--arms", "prompt,rag,ft,ft+rag",
                           "--run", str(work / "run"), "--rag", "hr-policy", "--system", SYSTEM, "--max-new-tokens", "96",
                           "--out", str(work / "report"), env=env)
    report = json.loads((work / "report" / "report.json").read_text())
    print(json.dumps({"seconds": {k: round(v) for k, v in times.items()}, "verdict": report.get("verdict")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
