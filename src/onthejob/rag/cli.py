"""The ``ojt rag`` commands, and the ``--rag`` option of ``ojt chat`` and ``ojt generate``.

    ojt rag index docs/ --collection hr
    ojt rag query hr "How many days of annual leave?" -k 5
    ojt rag eval hr --data questions.jsonl --out-md eval.md
    ojt rag list | ojt rag show hr | ojt rag delete hr

Each command parses its arguments and calls one function of ``onthejob.rag``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

MODE_CHOICES = ["hybrid", "dense", "sparse"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_index(args: argparse.Namespace) -> int:
    from onthejob.rag.embed import Embedder
    from onthejob.rag.index import index
    from onthejob.rag.store import open_store

    store = open_store(args.store)
    try:
        embedder = Embedder(args.embed_model) if args.embed_model else None
        report = index(args.paths, args.collection, store=store, embedder=embedder, target_tokens=args.chunk_tokens,
                       overlap=args.overlap, text_key=args.text_key, progress=sys.stderr.isatty())
    finally:
        store.close()
    _say(report.summary())
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from onthejob.rag.answer import retrieve, source_label
    from onthejob.rag.embed import Embedder
    from onthejob.rag.store import open_store

    store = open_store(args.store)
    try:
        embedder = Embedder(args.embed_model) if args.embed_model else None
        hits = retrieve(args.name, args.question, args.k, store=store, embedder=embedder, mode=args.mode)
    finally:
        store.close()
    if args.json:
        rows = [{"rank": h.rank, "score": h.score, "dense": h.dense, "sparse": h.sparse, "id": h.chunk.id,
                 "doc": h.chunk.doc, "page": h.chunk.meta.get("page"), "heading": h.chunk.meta.get("heading"),
                 "text": h.chunk.text} for h in hits]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for h in hits:
        scores = f"score {h.score:.4f}" + "".join(
            f"  {name} {v:.3f}" for name, v in (("dense", h.dense), ("sparse", h.sparse)) if v is not None
        )
        print(f"#{h.rank}  {scores}  {source_label(h.chunk.doc, h.chunk.meta)}  ({h.chunk.id})")
        print("    " + h.chunk.text[: args.chars].replace("\n", "\n    ") + ("…" if len(h.chunk.text) > args.chars else ""))
    if not hits:
        _say(f"no chunks in {args.name!r} match")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from onthejob.rag.evaluate import evaluate, write_report
    from onthejob.rag.store import open_store

    store = open_store(args.store)
    try:
        report = evaluate(args.name, args.data, store=store, modes=args.modes, candidates=args.candidates)
    finally:
        store.close()
    write_report(report, args.out_json, args.out_md)
    print(report.markdown())
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from onthejob.rag.store import open_store

    store = open_store(args.store)
    try:
        infos = store.list()
    finally:
        store.close()
    if args.json:
        print(json.dumps([_info_json(i) for i in infos], indent=2))
    elif not infos:
        _say("no collections yet (make one: ojt rag index PATH --collection NAME)")
    for i in infos if not args.json else []:
        print(f"{i.name:<24} {i.documents:>6} docs {i.chunks:>8} chunks  {_size(i.size_bytes):>9}  {i.embed_model}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from onthejob.rag.store import open_store

    store = open_store(args.store)
    try:
        info = store.info(args.name)
        docs = {doc: len(store.doc_chunks(args.name, doc)) for doc in store.documents(args.name)}
    finally:
        store.close()
    if args.json:
        print(json.dumps({**_info_json(info), "documents": docs}, indent=2))
        return 0
    print(f"collection   {info.name}\nembed model  {info.embed_model} ({info.dim} dims)\ncreated      {_when(info.created)}")
    print(f"size         {_size(info.size_bytes)}\n{info.documents} documents, {info.chunks} chunks:")
    for doc, n in sorted(docs.items()):
        print(f"  {n:>6}  {doc}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from onthejob.rag.store import open_store

    store = open_store(args.store)
    try:
        store.delete(args.name)
    finally:
        store.close()
    _say(f"deleted collection {args.name!r}")
    return 0


def _info_json(info) -> dict:
    return {"name": info.name, "embed_model": info.embed_model, "dim": info.dim, "created": _when(info.created),
            "documents": info.documents, "chunks": info.chunks, "size_bytes": info.size_bytes}


def _when(created) -> str:
    if isinstance(created, (int, float)):
        return datetime.fromtimestamp(created).isoformat(timespec="seconds")
    return str(created)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ---------------------------------------------------------------------------------- parser


def _store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL", help="postgresql://... for a pgvector server (default: the embedded store under ONTHEJOB_HOME)")


def register(sub) -> None:
    """Add ``ojt rag ...`` to the subparsers of ``ojt``."""
    from onthejob.rag.chunk import DEFAULT_OVERLAP, DEFAULT_TARGET
    from onthejob.rag.embed import DEFAULT_EMBED_MODEL

    rag = sub.add_parser("rag", help="index documents and answer from them (retrieval-augmented generation)")
    cmds = rag.add_subparsers(dest="rag_command", metavar="COMMAND")

    p = cmds.add_parser("index", help="index files and folders into a collection (only new and changed files cost time)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (.txt .md .html .pdf .docx .csv .jsonl)")
    p.add_argument("--collection", required=True, metavar="NAME", help="collection to create or update")
    p.add_argument("--embed-model", metavar="M", help=f"embedding model: a known name or a sentence-transformers folder (default: the collection's, else {DEFAULT_EMBED_MODEL})")
    p.add_argument("--chunk-tokens", type=int, default=DEFAULT_TARGET, metavar="N", help=f"target chunk size in tokens (default: {DEFAULT_TARGET})")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, metavar="N", help=f"tokens repeated between neighbouring chunks (default: {DEFAULT_OVERLAP})")
    p.add_argument("--text-key", metavar="KEY", help="for .csv/.jsonl: the column holding the text (default: every column as 'key: value')")
    _store_option(p)
    p.set_defaults(func=cmd_index)

    p = cmds.add_parser("query", help="show the chunks that best match a question, with scores and sources")
    p.add_argument("name", metavar="NAME", help="collection")
    p.add_argument("question")
    p.add_argument("-k", type=int, default=5, help="how many chunks (default: 5)")
    p.add_argument("--mode", choices=MODE_CHOICES, default="hybrid", help="hybrid (default): vectors and BM25 fused; dense: vectors; sparse: BM25")
    p.add_argument("--embed-model", metavar="M", help="must be the collection's (default: the collection's)")
    p.add_argument("--chars", type=int, default=300, help="characters of each chunk to print (default: 300)")
    p.add_argument("--json", action="store_true", help="machine-readable output, full chunk text")
    _store_option(p)
    p.set_defaults(func=cmd_query)

    p = cmds.add_parser("eval", help="measure retrieval (hit@k, MRR, nDCG@10, latency) on questions with known sources")
    p.add_argument("name", metavar="NAME", help="collection")
    p.add_argument("--data", required=True, metavar="Q.jsonl", help='questions: {"question", "relevant": [...], "reference"?} per line')
    p.add_argument("--modes", nargs="+", choices=MODE_CHOICES, default=["dense", "sparse", "hybrid"], help="search modes to compare (default: all three)")
    p.add_argument("--candidates", type=int, default=50, help="candidates per retriever before fusion (default: 50)")
    p.add_argument("--out-json", metavar="F", help="write the summary and per-question rankings as JSON")
    p.add_argument("--out-md", metavar="F", help="write the summary table as Markdown")
    _store_option(p)
    p.set_defaults(func=cmd_eval)

    p = cmds.add_parser("list", help="list collections")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _store_option(p)
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser("show", help="a collection's documents, chunks, embedding model and size")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _store_option(p)
    p.set_defaults(func=cmd_show)

    p = cmds.add_parser("delete", help="delete a collection")
    p.add_argument("name", metavar="NAME")
    _store_option(p)
    p.set_defaults(func=cmd_delete)


# ---------------------------------------------------------------------------------- --rag for chat/generate


def add_rag_option(p: argparse.ArgumentParser) -> None:
    """``--rag NAME`` (+ ``--rag-k``, ``--rag-store``) for commands that answer questions."""
    p.add_argument("--rag", metavar="NAME", help="answer from this collection's documents, citing them as [1], [2]")
    p.add_argument("--rag-k", type=int, default=5, metavar="K", help="passages put in the prompt (default: 5)")
    p.add_argument("--rag-store", metavar="URL", help="store holding the collection (default: the embedded store)")


def rag_from_args(args: argparse.Namespace):
    """A ``Retriever`` for ``--rag NAME``, or None without it (see ``onthejob.rag.answer.Retriever``)."""
    if not getattr(args, "rag", None):
        return None
    from onthejob.rag.answer import Retriever

    return Retriever(args.rag, k=args.rag_k, store_url=args.rag_store)
