"""Index documents into a collection, incrementally.

    ojt rag index docs/ --collection hr
    from onthejob.rag.index import index
    report = index(["docs/"], "hr")

Each document is recorded with the sha256 of its file. A rerun hashes every file and reads,
chunks and embeds only the new and changed ones; a changed file's chunks replace its old ones
(chunks whose text is unchanged keep their stored vectors), and documents indexed earlier under
the given paths that are gone now are dropped. All of it reaches the store in one ``replace``
call, one transaction: a run killed before it leaves the collection as it was, and rerunning
does the whole job again. The collection records its embedding model; indexing into it with
another model is refused (its vectors would not be comparable).

A file that cannot be read (a corrupt PDF, an encrypted one) does not stop the others: they are
indexed, and then a RagError lists each unreadable file and what is wrong with it. Those files
are left as they were (a document indexed before keeps its earlier chunks), so once they are
fixed or removed a rerun reads only them.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onthejob.errors import RagError
from onthejob.fsutil import file_hash
from onthejob.rag.chunk import DEFAULT_OVERLAP, DEFAULT_TARGET, chunk_sections
from onthejob.rag.embed import Embedder
from onthejob.rag.ingest import find_files, max_expanded_bytes, read_file
from onthejob.rag.store import Chunk, Store
from onthejob.rag.stores import open_store


@dataclass
class IndexReport:
    """What one ``index`` run did."""

    collection: str
    embed_model: str
    added: list[str] = field(default_factory=list)  # documents new to the collection
    changed: list[str] = field(default_factory=list)  # documents whose file hash changed
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # indexed before, gone from the paths now
    empty: list[str] = field(default_factory=list)  # read, but no text (e.g. a scanned PDF)
    unreadable: dict[str, str] = field(default_factory=dict)  # doc -> what is wrong; left as it was
    chunks_embedded: int = 0
    chunks_reused: int = 0  # unchanged text inside changed documents: vectors kept
    seconds: float = 0.0

    def summary(self) -> str:
        head = (
            f"{self.collection}: {len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted; "
            f"{self.chunks_embedded} chunks embedded, {self.chunks_reused} reused ({self.seconds:.1f}s, {self.embed_model})"
        )
        if self.empty:
            head += f"\nno text found in {len(self.empty)} file(s), e.g. {self.empty[0]} (scanned? run OCR first)"
        return head


def index(
    paths: list[str | os.PathLike],
    collection: str,
    *,
    store: Store | None = None,
    embedder: Embedder | None = None,
    target_tokens: int = DEFAULT_TARGET,
    overlap: int = DEFAULT_OVERLAP,
    text_key: str | None = None,
    progress: bool = True,
) -> IndexReport:
    """Bring ``collection`` up to date with the files under ``paths``; see the module docstring.
    Without ``store``, the default one is opened and closed again."""
    if not collection.strip():
        raise RagError("the collection name is empty", fix="name the collection, e.g. --collection hr")
    max_expanded_bytes()  # a bad $ONTHEJOB_RAG_MAX_MB fails here, once, not as every file's problem
    with (nullcontext(store) if store is not None else open_store()) as store:
        return _index(paths, collection, store, embedder, target_tokens, overlap, text_key, progress)


def _index(paths, collection, store, embedder, target, overlap, text_key, progress) -> IndexReport:
    from tqdm import tqdm

    start = time.perf_counter()
    existing = _existing(store, collection)
    embedder = embedder or Embedder(existing.embed_model if existing else None)
    if existing and existing.embed_model != embedder.name:
        raise RagError(
            f"collection {collection!r} was indexed with {existing.embed_model}, not {embedder.name}",
            fix=f"index with --embed-model {existing.embed_model}, or into a new collection (or delete it: ojt rag delete {collection})",
        )
    previous = store.documents(collection) if existing else {}
    report = IndexReport(collection, embedder.name)
    files, report.deleted = _scan(paths, previous)

    todo: dict[str, tuple[str, list[Chunk]]] = {}
    with tqdm(files, desc=f"index {collection}", unit="file", disable=not progress) as bar:
        for path in bar:
            doc = str(path)
            try:
                digest = _hash(path)
                if previous.get(doc) == digest:
                    report.unchanged.append(doc)
                    continue
                sections = read_file(path, text_key=text_key)
            except RagError as e:
                report.unreadable[doc] = str(e)
                continue
            (report.changed if doc in previous else report.added).append(doc)
            chunks = chunk_sections(doc, sections, count_tokens=embedder.count_tokens, target=target, overlap=overlap)
            if not chunks:
                report.empty.append(doc)
            todo[doc] = (digest, chunks)
            bar.set_postfix(chunks=sum(len(c) for _, c in todo.values()))

    report.chunks_reused = _reuse_vectors(store, collection, todo, previous)
    missing = [c for _, chunks in todo.values() for c in chunks if c.vector is None]
    if missing:
        with tqdm(total=len(missing), desc="embed", unit="chunk", disable=not progress) as bar:
            vectors = embedder.encode([c.text for c in missing], progress=bar.update)
        for chunk, vector in zip(missing, vectors):
            chunk.vector = vector
        report.chunks_embedded = len(missing)
    if todo or report.deleted or not existing:
        if not existing:
            store.create(collection, embed_model=embedder.name, dim=embedder.dim)
        store.replace(collection, todo, report.deleted)
    report.seconds = time.perf_counter() - start
    if report.unreadable:
        raise _unreadable(report, len(files))
    return report


def _hash(path: Path) -> str:
    try:
        return file_hash(path)
    except OSError as e:
        raise RagError(f"{path}: cannot read it: {e.strerror or e}", fix="check its permissions") from e


def _unreadable(report: IndexReport, files: int) -> RagError:
    # The fix goes on the first line, not after the last file's own message and fix.
    bad = report.unreadable
    head = (f"{report.collection}: {len(bad)} of {files} files could not be read; the other {files - len(bad)} "
            f"are indexed. Fix or remove these and rerun (only they are read again):")
    return RagError("\n".join([head, *(f"  {message}" for message in bad.values())]))


def _existing(store: Store, collection: str):
    """The collection's info, or None when it does not exist yet."""
    names = {c.name: c for c in store.list()}
    return names.get(collection)


def _scan(paths, previous: dict[str, str]) -> tuple[list[Path], list[str]]:
    """The files to index now, and the documents indexed before under ``paths`` that are gone."""
    present, roots = [], []
    for p in paths:
        path = Path(p).expanduser()
        root = str(path.resolve())
        roots.append(root)
        if path.exists():
            present.append(path)
        elif not any(_under(doc, root) for doc in previous):
            raise RagError(f"{path}: no such file or folder", fix="check the path")
    files = find_files(present)
    current = {str(f) for f in files}
    gone = sorted(doc for doc in previous if doc not in current and any(_under(doc, r) for r in roots))
    return files, gone


def _under(doc: str, root: str) -> bool:
    return doc == root or doc.startswith(root.rstrip(os.sep) + os.sep)


def _reuse_vectors(store: Store, collection: str, todo: dict, previous: dict[str, str]) -> int:
    """Give chunks of changed documents the stored vector of an old chunk with the same text."""
    reused = 0
    for doc, (_, chunks) in todo.items():
        if doc not in previous:
            continue
        old = {c.hash: c.vector for c in store.doc_chunks(collection, doc) if c.vector is not None}
        for chunk in chunks:
            vector = old.get(chunk.hash)
            if vector is not None:
                chunk.vector = np.asarray(vector, dtype=np.float32)
                reused += 1
    return reused
