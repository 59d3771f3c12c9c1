"""Retrieval on the HR handbook: dense vs BM25 vs hybrid, side by side, in one run.

    python benchmarks/rag_hr_eval.py [--data /work/shared/data/hr-policy] [--chunk-tokens 256] [--overlap 32]

Indexes ``used_documents/HR_Policy.pdf`` (49 pages) into a throwaway store, turns
``CSV_files/multi_choice_HR_Policy.csv`` (86 questions; ``context`` holds the ~4.4k-character source
passage of each) into eval JSONL whose ``relevant`` is that passage (matched to chunks by word
trigram overlap, see onthejob.rag.evaluate), and prints hit@k, MRR and nDCG@10 per mode, the ratio
of hybrid to the better single retriever, and the best dense scores of answerable and off-topic
questions (what the "not covered" threshold of onthejob.rag.answer is chosen from).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
from pathlib import Path

OFF_TOPIC = [
    "What is the capital of France?",
    "How do I bake sourdough bread?",
    "Who won the football world cup in 2018?",
    "What is the boiling point of water on Mars?",
    "How do I change a bicycle tyre?",
    "Explain the theory of general relativity.",
]


def to_jsonl(csv_path: Path, out: Path) -> int:
    from onthejob.fsutil import write_jsonl

    csv.field_size_limit(1 << 30)
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return write_jsonl(out, ({"question": r["question"], "relevant": [r["context"]]} for r in rows))


def best_dense(collection: str, questions: list[str], store) -> list[float]:
    from onthejob.rag.answer import best_dense as best, retrieve

    return [best(retrieve(collection, q, 5, store=store, mode="dense")) or 0.0 for q in questions]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/hr-policy", help="the hr-policy data folder")
    ap.add_argument("--chunk-tokens", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--keep", metavar="DIR", help="use this ONTHEJOB_HOME (kept) instead of a temporary one")
    args = ap.parse_args()
    data = Path(args.data)
    home = Path(args.keep or tempfile.mkdtemp(prefix="ojt-hr-"))
    os.environ["ONTHEJOB_HOME"] = str(home)

    from onthejob.data.readers import jsonl_records
    from onthejob.rag.config import DEFAULT_THRESHOLD
    from onthejob.rag.evaluate import evaluate
    from onthejob.rag.index import index
    from onthejob.rag.stores import open_store

    questions = home / "hr_questions.jsonl"
    n = to_jsonl(data / "CSV_files" / "multi_choice_HR_Policy.csv", questions)
    with open_store() as store:
        report = index([data / "used_documents" / "HR_Policy.pdf"], "hr", store=store, target_tokens=args.chunk_tokens,
                       overlap=args.overlap, progress=sys.stderr.isatty())
        print(report.summary())
        result = evaluate("hr", questions, store=store, candidates=args.candidates)
        print(f"\n{n} questions, chunk {args.chunk_tokens} tokens, overlap {args.overlap}, candidates {args.candidates}\n")
        print(result.markdown())
        s = result.summary
        for metric in ("hit@5", "mrr"):
            single = max(s["dense"][metric], s["sparse"][metric])
            print(f"hybrid / best single, {metric}: {s['hybrid'][metric]:.3f} / {single:.3f} = {s['hybrid'][metric] / single:.2f}x")
        asked = [record["question"] for _, record in jsonl_records(questions.read_text(encoding="utf-8"), str(questions))]
        on, off = best_dense("hr", asked, store), best_dense("hr", OFF_TOPIC, store)
        print(f"\nbest dense cosine, handbook questions: min {min(on):.2f}  p10 {statistics.quantiles(on, n=10)[0]:.2f}  median {statistics.median(on):.2f}")
        print(f"best dense cosine, off-topic questions: max {max(off):.2f}  median {statistics.median(off):.2f}")
        below = sorted((score, q) for score, q in zip(on, asked) if score < DEFAULT_THRESHOLD)
        print(f"handbook questions under the not-covered threshold {DEFAULT_THRESHOLD}: {len(below)} of {len(on)}")
        for score, q in below:
            print(f"  {score:.2f}  {q}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
