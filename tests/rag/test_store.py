"""The store contract, run on every backend (see conftest's ``store`` fixture)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from onthejob.errors import RagError
from onthejob.rag.fuse import ALPHA, fuse
from onthejob.rag.store import Chunk, text_hash
from onthejob.rag.stores import open_store

DIM = 4


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def chunk(doc: str, n: int, text: str, vector: np.ndarray, **meta) -> Chunk:
    return Chunk(id=f"{doc}#{n}", doc=doc, text=text, meta={"n": n, **meta}, hash=text_hash(text), vector=vector)


# A corpus where the expected orders are known by hand. Query: vector Q, text "vacation carry".
# Dense (cosine with Q): A 0.97, X 0.94, Z 0.22, Y 0.05, B 0.0.  Sparse: B has both words, Y one.
Q = unit(1, 0.2, 0, 0.05)
CORPUS = {
    "hr.md": ("hash-hr-1", [
        chunk("hr.md", 0, "Annual leave: every employee gets twenty five days of paid holiday.", unit(1, 0, 0, 0),
              page=1, heading="Leave > Annual leave"),
        chunk("hr.md", 1, "Vacation carry over is capped at five days each calendar year.", unit(0, 0, 1, 0), page=2),
        chunk("hr.md", 2, "Vacation requests go through the people portal.", unit(0, 0, 0, 1), page=2),
    ]),
    "it.md": ("hash-it-1", [
        chunk("it.md", 0, "Laptops are refreshed every three years.", unit(0.8, 0.6, 0, 0)),
        chunk("it.md", 1, "Printers sit on the second floor.", unit(0, 1, 0, 0)),
    ]),
}
A, B, Y, X, Z = "hr.md#0", "hr.md#1", "hr.md#2", "it.md#0", "it.md#1"


@pytest.fixture
def hr(store):
    store.create("hr", embed_model="test-model", dim=DIM)
    store.replace("hr", CORPUS, delete=[])
    return store


def ids(hits) -> list[str]:
    return [h.chunk.id for h in hits]


# -- collections -----------------------------------------------------------------------------------

def test_create_info_list_delete(store):
    store.create("hr", embed_model="test-model", dim=DIM)
    store.create("hr", embed_model="test-model", dim=DIM)  # same model: a no-op
    store.create("eng", embed_model="other-model", dim=8)
    info = store.info("hr")
    assert (info.name, info.embed_model, info.dim, info.documents, info.chunks) == ("hr", "test-model", DIM, 0, 0)
    assert info.created[:2] == "20"
    assert [c.name for c in store.list()] == ["eng", "hr"]
    store.delete("eng")
    assert [c.name for c in store.list()] == ["hr"]
    with pytest.raises(RagError, match=r"'eng'.*known: hr"):
        store.info("eng")
    with pytest.raises(RagError, match="known: hr"):
        store.documents("nope")


def test_refuses_another_embedding_model_or_dim(store):
    store.create("hr", embed_model="test-model", dim=DIM)
    with pytest.raises(RagError, match="test-model"):
        store.create("hr", embed_model="other-model", dim=DIM)
    with pytest.raises(RagError, match="dim"):
        store.create("hr", embed_model="test-model", dim=DIM * 2)


def test_open_store_default_and_unknown_scheme(tmp_path):
    with open_store() as default:
        default.create("x", embed_model="m", dim=2)
    assert (tmp_path / "home" / "rag" / "rag.sqlite3").is_file()  # ONTHEJOB_HOME, not the real cache
    with pytest.raises(RagError, match=r"postgresql://.*sqlite://"):
        open_store("mysql://localhost/db")


def test_a_store_closes_at_the_end_of_with(tmp_path):
    url = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    with open_store(url) as store:
        store.create("hr", embed_model="m", dim=2)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.list()
    with pytest.raises(RagError, match="no RAG collection"), open_store(url) as failed:
        failed.info("nope")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):  # closed on the way out of an error too
        failed.list()


# -- writing ---------------------------------------------------------------------------------------

def test_replace_inserts_replaces_one_doc_and_deletes(hr):
    assert hr.documents("hr") == {"hr.md": "hash-hr-1", "it.md": "hash-it-1"}
    info = hr.info("hr")
    assert (info.documents, info.chunks) == (2, 5) and info.size_bytes > 0
    it_before = hr.doc_chunks("hr", "it.md")

    new = [chunk("hr.md", 0, "Annual leave is now thirty days.", unit(1, 0, 0, 0))]
    hr.replace("hr", {"hr.md": ("hash-hr-2", new)}, delete=[])
    assert hr.documents("hr") == {"hr.md": "hash-hr-2", "it.md": "hash-it-1"}
    assert [c.text for c in hr.doc_chunks("hr", "hr.md")] == ["Annual leave is now thirty days."]
    it_after = hr.doc_chunks("hr", "it.md")
    assert [(c.id, c.text, c.meta, c.hash) for c in it_after] == [(c.id, c.text, c.meta, c.hash) for c in it_before]
    assert all(np.allclose(a.vector, b.vector) for a, b in zip(it_after, it_before))
    assert ids(hr.search("hr", Q, "vacation", mode="sparse")) == []  # the old chunks are gone from the index

    hr.replace("hr", {}, delete=["it.md"])
    assert hr.documents("hr") == {"hr.md": "hash-hr-2"}
    assert hr.doc_chunks("hr", "it.md") == []
    assert ids(hr.search("hr", Q, "laptops printers", k=5)) == ["hr.md#0"]


def test_doc_chunks_round_trip(hr):
    got = hr.doc_chunks("hr", "hr.md")
    want = CORPUS["hr.md"][1]
    assert [(c.id, c.doc, c.text, c.meta, c.hash) for c in got] == [(c.id, c.doc, c.text, c.meta, c.hash) for c in want]
    assert all(c.vector.dtype == np.float32 and np.allclose(c.vector, w.vector, atol=1e-6) for c, w in zip(got, want))


def test_replace_refuses_bad_vectors_and_changes_nothing(hr):
    bad = [chunk("new.md", 0, "wrong size", np.ones(DIM + 1, dtype=np.float32))]
    with pytest.raises(RagError, match="vector shape"):
        hr.replace("hr", {"new.md": ("h", bad)}, delete=["it.md"])
    assert hr.documents("hr") == {"hr.md": "hash-hr-1", "it.md": "hash-it-1"}
    with pytest.raises(RagError, match="known: hr"):
        hr.replace("missing", {}, delete=[])


# -- searching -------------------------------------------------------------------------------------

def test_dense_ranking(hr):
    hits = hr.search("hr", Q, "vacation carry", k=5, mode="dense")
    assert ids(hits) == [A, X, Z, Y, B]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    for h in hits:
        want = float(np.dot(Q, next(c.vector for _, cs in CORPUS.values() for c in cs if c.id == h.chunk.id)))
        assert h.score == pytest.approx(want, abs=1e-5) and h.dense == h.score and h.sparse is None


def test_sparse_ranking_with_stemming(hr):
    hits = hr.search("hr", Q, "vacations carry?", k=5, mode="sparse")  # "vacations" stems to "vacation"
    assert ids(hits) == [B, Y]
    assert hits[0].score > hits[1].score > 0
    assert all(h.dense is None and h.sparse == h.score for h in hits)
    assert hr.search("hr", Q, "the and of", mode="sparse") == []  # only stop words: no keyword hits
    assert ids(hr.search("hr", Q, 'it\'s "quoted" OR (NEAR', mode="sparse")) == []  # syntax never leaks


def test_hybrid_finds_what_each_alone_misses(hr):
    # With 2 candidates per side, dense finds A (and X) but never B; sparse finds B (and Y) but never A.
    dense = set(ids(hr.search("hr", Q, "vacation carry", k=2, mode="dense", candidates=2)))
    sparse = set(ids(hr.search("hr", Q, "vacation carry", k=2, mode="sparse", candidates=2)))
    hybrid = set(ids(hr.search("hr", Q, "vacation carry", k=2, mode="hybrid", candidates=2)))
    wanted = {A, B}
    assert dense == {A, X} and sparse == {B, Y}
    assert hybrid == wanted
    assert len(hybrid & wanted) >= max(len(dense & wanted), len(sparse & wanted))


def test_hybrid_scores_are_relative_score_fusion(hr):
    hits = hr.search("hr", Q, "vacation carry", k=5)
    by_id = {h.chunk.id: h for h in hits}
    assert set(by_id) == {A, B, X, Y, Z}
    assert by_id[B].dense is not None and by_id[B].sparse is not None and by_id[X].sparse is None

    def norm(scores):
        low, high = min(scores.values()), max(scores.values())
        return {c: (v - low) / (high - low) for c, v in scores.items()}

    dense = norm({c: h.dense for c, h in by_id.items()})
    sparse = norm({c: h.sparse for c, h in by_id.items() if h.sparse is not None})
    want = {c: ALPHA * dense[c] + (1 - ALPHA) * sparse.get(c, 0.0) for c in by_id}
    assert ids(hits) == sorted(want, key=lambda c: -want[c])
    assert [h.score for h in hits] == pytest.approx([want[c] for c in ids(hits)])


def test_reciprocal_rank_fusion_on_request():
    dense = [("A", 0.9), ("X", 0.8), ("B", 0.1)]
    sparse = [("B", 7.0), ("Y", 3.0)]
    fused = fuse(dense, sparse, mode="hybrid", k=4, method="rrf")
    want = {"A": 1 / 61, "X": 1 / 62, "B": 1 / 63 + 1 / 61, "Y": 1 / 62}
    assert [f.key for f in fused] == ["B", "A", "X", "Y"]
    assert [f.score for f in fused] == pytest.approx([want[f.key] for f in fused])
    with pytest.raises(ValueError, match="known: relative, rrf"):
        fuse(dense, sparse, mode="hybrid", k=2, method="borda")


def test_hybrid_search_fuses_by_rrf_when_asked(hr):
    dense = [(h.chunk.id, h.dense) for h in hr.search("hr", Q, "vacation carry", k=50, mode="dense")]
    sparse = [(h.chunk.id, h.sparse) for h in hr.search("hr", Q, "vacation carry", k=50, mode="sparse")]
    want = fuse(dense, sparse, mode="hybrid", k=5, method="rrf")
    hits = hr.search("hr", Q, "vacation carry", k=5, fusion="rrf")
    assert ids(hits) == [f.key for f in want]
    assert [h.score for h in hits] == pytest.approx([f.score for f in want])
    assert ids(hits) != ids(hr.search("hr", Q, "vacation carry", k=5))  # not the default, relative
    with pytest.raises(RagError, match="use one of relative, rrf"):
        hr.search("hr", Q, "x", fusion="borda")


def test_k_and_rank_numbering(hr):
    hits = hr.search("hr", Q, "vacation carry", k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert len(hr.search("hr", Q, "vacation carry", k=50)) == 5
    top = hr.search("hr", Q, "vacation carry", k=1, mode="dense")[0]
    assert top.chunk.meta == {"n": 0, "page": 1, "heading": "Leave > Annual leave"}
    assert top.chunk.doc == "hr.md" and top.chunk.hash == text_hash(top.chunk.text)
    with pytest.raises(RagError, match="mode"):
        hr.search("hr", Q, "x", mode="bm25")


def test_search_empty_collection(store):
    store.create("empty", embed_model="test-model", dim=DIM)
    assert store.search("empty", Q, "vacation", k=3) == []


# -- crash safety ----------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from onthejob.rag.store import Chunk, text_hash
    from onthejob.rag.stores import open_store
    url, flag = sys.argv[1], sys.argv[2]
    store = open_store(url)
    cls = type(store)
    put_doc, written = cls._put_doc, []
    def slow_put_doc(self, *args):
        put_doc(self, *args)
        written.append(args)
        if len(written) == 4:          # deep inside the transaction, with thousands of rows written
            open(flag, "w").close()
            time.sleep(120)
    cls._put_doc = slow_put_doc
    rng = np.random.default_rng(0)
    filler = " ".join(["vacation policy words"] * 20)
    docs = {}
    for d in range(6):
        doc = f"big{d}.md"
        vecs = rng.standard_normal((1500, 4)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        docs[doc] = (f"h{d}", [Chunk(f"{doc}#{n}", doc, f"{filler} {n}", {"n": n}, text_hash(f"{filler} {n}"), vecs[n])
                               for n in range(1500)])
    docs["hr.md"] = ("hash-hr-2", [Chunk("hr.md#0", "hr.md", "replaced", {}, text_hash("replaced"),
                                         np.array([1, 0, 0, 0], dtype=np.float32))])
    store.replace("hr", docs, delete=["it.md"])
""")


def test_killed_replace_leaves_collection_as_before(hr, store_url, tmp_path):
    before = (hr.documents("hr"), ids(hr.search("hr", Q, "vacation carry", k=5)),
              [c.text for c in hr.doc_chunks("hr", "hr.md")])
    flag = tmp_path / "inside-transaction"
    child = subprocess.Popen([sys.executable, "-c", CHILD, store_url, str(flag)], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert child.poll() is None, f"the writer exited early with {child.returncode}"
            assert time.monotonic() < deadline, "the writer never got inside its transaction"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    with open_store(store_url) as fresh:  # a new process's view, as well as the old connection's
        for s in (hr, fresh):
            after = (s.documents("hr"), ids(s.search("hr", Q, "vacation carry", k=5)),
                     [c.text for c in s.doc_chunks("hr", "hr.md")])
            assert after == before
            assert s.info("hr").chunks == 5
        # and the store still takes writes: a second replace completes the job
        fresh.replace("hr", {"hr.md": ("hash-hr-2", [chunk("hr.md", 0, "replaced", unit(1, 0, 0, 0))])},
                      delete=["it.md"])
        assert fresh.documents("hr") == {"hr.md": "hash-hr-2"}
        assert ids(hr.search("hr", Q, "replaced", k=5)) == ["hr.md#0"]  # the old connection sees it too


# -- the parts behind the stores ------------------------------------------------------------------

def test_keyword_budget_drops_the_most_common_words_first():
    from onthejob.rag.stores.sqlite import within_budget

    df = {"rare": 10, "mid": 30, "common": 60, "absent": 0}
    assert within_budget(df, chunks=100, budget=1000) == ["rare", "mid", "common"]  # all fit: all kept
    assert within_budget(df, chunks=100, budget=45) == ["rare", "mid"]  # "common" is in over half
    assert within_budget(df, chunks=100, budget=35) == ["rare"]
    assert within_budget({"everywhere": 90, "often": 40}, chunks=100, budget=5) == ["often"]  # the rarest, always
    assert within_budget({"everywhere": 90}, chunks=100, budget=5) == []  # weighs ~0 in BM25 anyway
    assert within_budget({"everywhere": 1}, chunks=1, budget=5) == ["everywhere"]  # small: no pruning


def test_rerank_hook_reorders_and_renumbers(hr):
    from onthejob.rag.rerank import rerank

    class ByLength:
        def score(self, query: str, texts: list[str]) -> list[float]:
            return [float(len(t)) for t in texts]

    hits = hr.search("hr", Q, "vacation carry", k=5)
    top = rerank(ByLength(), "vacation carry", hits, k=2)
    longest = sorted(hits, key=lambda h: -len(h.chunk.text))[:2]
    assert ids(top) == ids(longest) and [h.rank for h in top] == [1, 2]
    assert top[0].score == len(top[0].chunk.text) and top[0].dense == longest[0].dense
