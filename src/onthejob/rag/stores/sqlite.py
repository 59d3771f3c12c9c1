"""The embedded default store: one SQLite file in WAL mode, FTS5 for words, a float16 matrix for vectors.

    from onthejob.rag.stores import open_store
    with open_store("sqlite:////abs/path/rag.sqlite3") as store:   # or open_store() for paths.home()/rag
        ...

Layout: ``collections`` (with a ``version`` bumped by every write), ``documents`` (doc -> file
hash), ``chunks`` (text, JSON metadata, the vector as a float32 BLOB) and, per collection, an
external-content FTS5 table ``fts_<id>`` (porter stemming, so its BM25 statistics are the
collection's own). ``replace`` is one ``BEGIN IMMEDIATE`` transaction: SQLite's WAL keeps an
uncommitted write invisible and discards it after a crash, SIGKILL included.

Dense search: the collection's vectors are read once into an (N, dim) float16 torch matrix, kept
for the life of the store and reloaded when ``version`` moves. A query scans it (one
matrix-vector product, half the memory traffic of float32), shortlists the ``n + max(n, 50)``
best and rescores those exactly from their float32 BLOBs, so the scores and order returned are
exact float32 cosines; only a chunk within float16 rounding (~1e-3) of the shortlist's edge could
be missed. Meanwhile a worker thread runs the FTS5 query (BM25), within ``store.POSTING_BUDGET``.

Chosen by measurement (``benchmarks/rag_index.py``, 100k chunks, 384 dims, 2 busy shared cores):
- exact float32 numpy product: 7 ms per query on a quiet machine, 16 ms on a busy one (memory
  bound: 150 MB a query); with the 12 ms query embedding and FTS5, ~32 ms p50 end to end when busy;
- float16 torch scan + exact rescoring: 5 ms quiet or busy, recall@50 against exact float32 1.0
  on the benchmark's queries, half the memory; hybrid 24 ms p50 end to end, embedding included;
- hnswlib HNSW (M=16, ef_construction=100): ~0.6 ms per query but 75 s to build for 100k, a second
  file to keep in step with SQLite's transactions, and recall@50 0.11 on the benchmark's random
  vectors (their worst case, but far from exact);
- sqlite-vec is out: this Python cannot load SQLite extensions.
torch is imported only at the first search; it is a core dependency, and the query embedder has
already loaded it. Past a few hundred thousand chunks per collection use the postgres store.
"""

from __future__ import annotations

import json
import sqlite3
from concurrent import futures
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from onthejob.errors import RagError
from onthejob.rag.fuse import fuse
from onthejob.rag.store import (POSTING_BUDGET, Chunk, CollectionInfo, Hit, Store, check_chunks, check_mode,
                                missing, model_clash, query_words, register_store, within_budget)

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, embed_model TEXT NOT NULL,
    dim INTEGER NOT NULL, created TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS documents (
    cid INTEGER NOT NULL, doc TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (cid, doc)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY, cid INTEGER NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, text TEXT NOT NULL,
    meta TEXT NOT NULL, hash TEXT NOT NULL, vector BLOB NOT NULL, UNIQUE (cid, id));
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (cid, doc);
"""

def path_from_url(url: str) -> Path:
    """``sqlite:///rel/file`` is relative, ``sqlite:////abs/file`` absolute (SQLAlchemy's rule)."""
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise RagError(f"store URL {url!r} names no file", fix="write sqlite:////absolute/path/rag.sqlite3")
    return Path(path).expanduser()


@register_store("sqlite")
class SqliteStore(Store):
    def __init__(self, url: str):
        self.path = path_from_url(url)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
            # what the code says it is.
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after any crash
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise RagError(f"cannot open the RAG store {self.path}: {e}",
                           fix="check the path and its permissions, or pass another --store") from e
        self._dense: dict[int, tuple] = {}  # cid -> (version, rowids (N,), float16 torch matrix (N, dim))
        self._dfs: dict[str, int] = {}  # word -> chunks holding it, in collection version _dfs_of
        self._dfs_of: tuple[int, int] | None = None
        self._pool: futures.ThreadPoolExecutor | None = None

    # -- collections ---------------------------------------------------------------------------

    def create(self, name: str, *, embed_model: str, dim: int) -> None:
        with self._write():
            row = self.db.execute("SELECT embed_model, dim FROM collections WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if tuple(row) != (embed_model, dim):
                    raise model_clash(name, tuple(row), (embed_model, dim))
                return
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            cur = self.db.execute("INSERT INTO collections (name, embed_model, dim, created) VALUES (?, ?, ?, ?)",
                                  (name, embed_model, dim, created))
            cid = cur.lastrowid
            self.db.execute(f"CREATE VIRTUAL TABLE fts_{cid} USING fts5(text, content='chunks', "
                            "content_rowid='rowid', tokenize='porter unicode61')")

    def info(self, name: str) -> CollectionInfo:
        cid = self._cid(name)
        return self._info(cid)

    def list(self) -> list[CollectionInfo]:
        return [self._info(cid) for (cid,) in self.db.execute("SELECT id FROM collections ORDER BY name")]

    def delete(self, name: str) -> None:
        with self._write():
            cid = self._cid(name)
            self.db.execute("DELETE FROM chunks WHERE cid = ?", (cid,))
            self.db.execute("DELETE FROM documents WHERE cid = ?", (cid,))
            self.db.execute("DELETE FROM collections WHERE id = ?", (cid,))
            self.db.execute(f"DROP TABLE fts_{cid}")
        self._dense.pop(cid, None)

    def documents(self, name: str) -> dict[str, str]:
        cid = self._cid(name)
        return dict(self.db.execute("SELECT doc, hash FROM documents WHERE cid = ? ORDER BY doc", (cid,)))

    def doc_chunks(self, name: str, doc: str) -> list[Chunk]:
        cid = self._cid(name)
        rows = self.db.execute("SELECT id, doc, text, meta, hash, vector FROM chunks WHERE cid = ? AND doc = ? "
                               "ORDER BY rowid", (cid, doc))
        return [_chunk(row, np.frombuffer(row[5], dtype=np.float32).copy()) for row in rows]

    # -- writing -------------------------------------------------------------------------------

    def replace(self, name: str, docs: dict[str, tuple[str, list[Chunk]]], delete: list[str]) -> None:
        with self._write():
            cid, dim = self.db.execute("SELECT id, dim FROM collections WHERE name = ?", (name,)).fetchone() or (None, 0)
            if cid is None:
                raise missing(name, self._names())
            check_chunks(name, dim, docs)
            for doc in delete:
                self._drop_doc(cid, doc)
                self.db.execute("DELETE FROM documents WHERE cid = ? AND doc = ?", (cid, doc))
            for doc, (file_hash, chunks) in docs.items():
                self._put_doc(cid, doc, file_hash, chunks)
            self.db.execute("UPDATE collections SET version = version + 1 WHERE id = ?", (cid,))

    def _put_doc(self, cid: int, doc: str, file_hash: str, chunks: list[Chunk]) -> None:
        self._drop_doc(cid, doc)
        self.db.executemany(
            "INSERT INTO chunks (cid, id, doc, text, meta, hash, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(cid, c.id, doc, c.text, json.dumps(c.meta, ensure_ascii=False), c.hash,
              np.ascontiguousarray(c.vector, dtype=np.float32).tobytes()) for c in chunks])
        self.db.execute(f"INSERT INTO fts_{cid} (rowid, text) SELECT rowid, text FROM chunks "
                        "WHERE cid = ? AND doc = ?", (cid, doc))
        self.db.execute("INSERT OR REPLACE INTO documents (cid, doc, hash) VALUES (?, ?, ?)", (cid, doc, file_hash))

    def _drop_doc(self, cid: int, doc: str) -> None:
        # External-content FTS5 must be told the old text to forget it, before the row goes.
        self.db.execute(f"INSERT INTO fts_{cid} (fts_{cid}, rowid, text) SELECT 'delete', rowid, text "
                        "FROM chunks WHERE cid = ? AND doc = ?", (cid, doc))
        self.db.execute("DELETE FROM chunks WHERE cid = ? AND doc = ?", (cid, doc))

    # -- searching -----------------------------------------------------------------------------

    def search(self, name: str, vector: np.ndarray, text: str, *, k: int = 5, mode: str = "hybrid",
               candidates: int = 50, fusion: str = "relative") -> list[Hit]:
        check_mode(mode, k, candidates, fusion)
        n = max(k, candidates)
        job = None
        self.db.execute("BEGIN")  # one snapshot for the matrix, the keywords and the chunks
        try:
            cid = self._cid(name)
            rowids, matrix, version = self._matrix(cid)
            # The keyword search runs on a worker thread while torch scans the vectors: both release
            # the GIL, and the connection is untouched here until the worker is done.
            job = self._worker().submit(self._sparse_top, cid, version, len(rowids), text, n) if mode != "dense" else None
            shortlist = self._shortlist(rowids, matrix, vector, n) if mode != "sparse" else []
            sparse = job.result() if job else []
            dense = self._exact(shortlist, vector, n)
            fused = fuse(dense, sparse, mode=mode, k=k, method=fusion)
            chunks = self._chunks([f.key for f in fused])
        finally:
            if job is not None:
                futures.wait([job])
            self.db.execute("COMMIT")
        return [Hit(chunk=chunks[f.key], score=float(f.score), dense=f.dense, sparse=f.sparse, rank=rank)
                for rank, f in enumerate(fused, start=1)]

    def _shortlist(self, rowids: np.ndarray, matrix, vector: np.ndarray, n: int) -> list[int]:
        """Rowids of the ``n + max(n, 50)`` best chunks by a float16 cosine: a superset of the
        exact top ``n`` unless float16 rounding (~1e-3) reorders chunks across that margin."""
        import torch

        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != matrix.shape[1]:
            raise RagError(f"query vector has dim {q.shape[0]}; the collection holds dim {matrix.shape[1]}",
                           fix="embed the query with the collection's model")
        size = min(matrix.shape[0], n + max(n, 50))
        if size == 0:
            return []
        scores = torch.mv(matrix, torch.from_numpy(q).to(torch.float16))  # (N,)
        return rowids[torch.topk(scores.float(), size).indices.numpy()].tolist()

    def _exact(self, rowids: list[int], vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        """The exact float32 cosines of the shortlist, best ``n`` first (ties by insertion order)."""
        if not rowids:
            return []
        marks = ",".join("?" * len(rowids))
        rows = self.db.execute(f"SELECT rowid, vector FROM chunks WHERE rowid IN ({marks})", rowids).fetchall()
        vectors = np.frombuffer(b"".join(v for _, v in rows), dtype=np.float32).reshape(len(rows), -1)
        scores = vectors @ np.asarray(vector, dtype=np.float32).reshape(-1)  # (S,)
        return sorted(((r, float(sc)) for (r, _), sc in zip(rows, scores)), key=lambda x: (-x[1], x[0]))[:n]

    def _sparse_top(self, cid: int, version: int, chunks: int, text: str, n: int) -> list:
        df = {w: self._df(cid, version, w) for w in query_words(text)}
        query = " OR ".join(f'"{w}"' for w in within_budget(df, chunks, POSTING_BUDGET))
        if not query:
            return []
        # bm25() is lower-is-better; negate it so every score in a Hit is higher-is-better.
        rows = self.db.execute(f"SELECT rowid, -bm25(fts_{cid}) FROM fts_{cid} WHERE fts_{cid} MATCH ? "
                               "ORDER BY rank, rowid LIMIT ?", (query, n))
        return [(int(r), float(s)) for r, s in rows]

    def _df(self, cid: int, version: int, word: str) -> int:
        """How many chunks hold ``word`` (stemmed by FTS5 itself), cached per collection version."""
        if self._dfs_of != (cid, version) or len(self._dfs) > 100_000:
            self._dfs, self._dfs_of = {}, (cid, version)
        if word not in self._dfs:
            self._dfs[word] = self.db.execute(f"SELECT COUNT(*) FROM fts_{cid} WHERE fts_{cid} MATCH ?",
                                              (f'"{word}"',)).fetchone()[0]
        return self._dfs[word]

    def _matrix(self, cid: int):
        """The collection's rowids, its (N, dim) float16 torch matrix and its version; read once
        and again only when the version moved."""
        import torch

        version, dim = self.db.execute("SELECT version, dim FROM collections WHERE id = ?", (cid,)).fetchone()
        cached = self._dense.get(cid)
        if cached is None or cached[0] != version:
            self._dense.pop(cid, None)  # free the old matrix before reading the new one
            rows = self.db.execute("SELECT rowid, vector FROM chunks WHERE cid = ?", (cid,)).fetchall()
            rowids = np.fromiter((r for r, _ in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(v for _, v in rows), dtype=np.float32).reshape(len(rows), dim)
            cached = self._dense[cid] = (version, rowids, torch.from_numpy(matrix.copy()).to(torch.float16))
        return cached[1], cached[2], version

    def _chunks(self, rowids: list[int]) -> dict[int, Chunk]:
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        rows = self.db.execute(f"SELECT rowid, id, doc, text, meta, hash, vector FROM chunks "
                               f"WHERE rowid IN ({marks})", rowids)
        return {r[0]: _chunk(r[1:], np.frombuffer(r[6], dtype=np.float32).copy()) for r in rows}

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self._dense.clear()
        self.db.close()

    def _worker(self) -> futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-fts")
        return self._pool

    def _write(self):
        return _Transaction(self.db)

    def _cid(self, name: str) -> int:
        row = self.db.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise missing(name, self._names())
        return row[0]

    def _names(self) -> list[str]:
        return [n for (n,) in self.db.execute("SELECT name FROM collections")]

    def _info(self, cid: int) -> CollectionInfo:
        name, model, dim, created = self.db.execute(
            "SELECT name, embed_model, dim, created FROM collections WHERE id = ?", (cid,)).fetchone()
        docs = self.db.execute("SELECT COUNT(*) FROM documents WHERE cid = ?", (cid,)).fetchone()[0]
        chunks, size = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(text AS BLOB)) + LENGTH(meta) + LENGTH(vector)), 0) "
            "FROM chunks WHERE cid = ?", (cid,)).fetchone()
        return CollectionInfo(name=name, embed_model=model, dim=dim, created=created, documents=docs,
                              chunks=chunks, size_bytes=size)


class _Transaction:
    """``BEGIN IMMEDIATE`` (take the write lock now, not halfway through) ... COMMIT or ROLLBACK."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, error, tb) -> None:
        if kind is None:
            self.db.execute("COMMIT")
            return
        self.db.execute("ROLLBACK")
        if isinstance(error, sqlite3.Error):
            raise RagError(f"the RAG store refused the update: {error}",
                           fix="another process may hold the store; retry when it is done") from error


def _chunk(row, vector: np.ndarray | None) -> Chunk:
    cid, doc, text, meta, hash_ = row[:5]
    return Chunk(id=cid, doc=doc, text=text, meta=json.loads(meta), hash=hash_, vector=vector)
