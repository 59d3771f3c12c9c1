"""The ``ojt rag`` commands, and the ``--rag`` options of the commands that answer questions.

    ojt rag index docs/ --collection hr
    ojt rag index --config index.yaml docs/             # an IndexConfig; flags and PATHs override its keys
    ojt rag query hr "How many days of annual leave?" -k 5 --fusion rrf
    ojt rag query --config retrieval.yaml "How many days of annual leave?"   # a RetrievalConfig
    ojt rag eval hr --data questions.jsonl --out-md eval.md
    ojt rag list | ojt rag show hr | ojt rag delete hr

Each command parses its arguments, loads its config and calls one function of ``onthejob.rag``.
Other stages take a ``RetrievalConfig`` as their ``rag`` section, with the flags
``onthejob.rag.config.RAG_FLAGS`` names (``--rag NAME``, ``--rag-k K``, ``--rag-mode``, ... or
``--rag.k``), and open it with ``onthejob.rag.answer.opened_retriever``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import datetime

from pydantic import Field

from onthejob.config import Section, add_config_file, add_options, config_file, load, overrides
from onthejob.console import human_bytes, say
from onthejob.errors import ConfigError
from onthejob.rag.config import METAVARS, IndexConfig, RetrievalConfig
from onthejob.rag.store import MODES

# Today's spellings first, so that usage lines show them (add_options adds --key and --key_name too).
ALIASES = {"k": "-k", "embed_model": "--embed-model", "chunk_tokens": "--chunk-tokens", "text_key": "--text-key"}


def cmd_index(args: argparse.Namespace) -> int:
    from onthejob.rag.embed import Embedder
    from onthejob.rag.index import index
    from onthejob.rag.stores import open_store

    config = load(IndexConfig, config_file(args), overrides(args, {"paths": "paths"}))
    with open_store(config.store) as store:
        embedder = Embedder(config.embed_model) if config.embed_model else None
        report = index(config.paths, config.collection, store=store, embedder=embedder,
                       target_tokens=config.chunk_tokens, overlap=config.overlap, text_key=config.text_key,
                       progress=sys.stderr.isatty())
    say(report.summary())
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from onthejob.rag.answer import Retriever, source_label

    config = load(RetrievalConfig, config_file(args), overrides(args, {"collection": "name"}))
    if config.collection is None:
        raise ConfigError("no collection to query", fix='write ojt rag query NAME "QUESTION", or collection: in the --config file')
    with Retriever(config) as retriever:
        hits = retriever.search(args.question)
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
        say(f"no chunks in {config.collection!r} match")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from onthejob.rag.evaluate import evaluate, write_report
    from onthejob.rag.stores import open_store

    with open_store(args.store) as store:
        report = evaluate(args.name, args.data, store=store, modes=args.modes, candidates=args.candidates)
    write_report(report, args.out_json, args.out_md)
    print(report.markdown())
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from onthejob.rag.stores import open_store

    with open_store(args.store) as store:
        infos = store.list()
    if args.json:
        print(json.dumps([_info_json(i) for i in infos], indent=2))
    elif not infos:
        say("no collections yet (make one: ojt rag index PATH --collection NAME)")
    for i in infos if not args.json else []:
        print(f"{i.name:<24} {i.documents:>6} docs {i.chunks:>8} chunks  {human_bytes(i.size_bytes):>9}  {i.embed_model}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from onthejob.rag.stores import open_store

    with open_store(args.store) as store:
        info = store.info(args.name)
        docs = {doc: len(store.doc_chunks(args.name, doc)) for doc in store.documents(args.name)}
    if args.json:
        print(json.dumps({**_info_json(info), "documents": docs}, indent=2))
        return 0
    print(f"collection   {info.name}\nembed model  {info.embed_model} ({info.dim} dims)\ncreated      {_when(info.created)}")
    print(f"size         {human_bytes(info.size_bytes)}\n{info.documents} documents, {info.chunks} chunks:")
    for doc, n in sorted(docs.items()):
        print(f"  {n:>6}  {doc}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from onthejob.rag.stores import open_store

    with open_store(args.store) as store:
        store.delete(args.name)
    say(f"deleted collection {args.name!r}")
    return 0


def _info_json(info) -> dict:
    return {"name": info.name, "embed_model": info.embed_model, "dim": info.dim, "created": _when(info.created),
            "documents": info.documents, "chunks": info.chunks, "size_bytes": info.size_bytes}


def _when(created) -> str:
    if isinstance(created, (int, float)):
        return datetime.fromtimestamp(created).isoformat(timespec="seconds")
    return str(created)


# ---------------------------------------------------------------------------------- parser


def _store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL", help="postgresql://... for a pgvector server (default: the embedded store under ONTHEJOB_HOME)")


def register(sub) -> None:
    """Add ``ojt rag ...`` to the subparsers of ``ojt``."""
    rag = sub.add_parser("rag", help="index documents and answer from them (retrieval-augmented generation)")
    cmds = rag.add_subparsers(dest="rag_command", metavar="COMMAND")

    p = cmds.add_parser("index", help="index files and folders into a collection (only new and changed files cost time)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (.txt .md .html .pdf .docx .csv .jsonl); given, they replace paths: of the config file")
    add_config_file(p, what="index settings (IndexConfig keys)")
    add_options(p, IndexConfig, aliases=ALIASES, skip=("paths",), metavars=METAVARS)
    p.set_defaults(func=cmd_index, settings=True)

    # NAME is optional so that a config file can name the collection; argparse then takes flags
    # before NAME or after QUESTION, not between the two.
    p = cmds.add_parser("query", help="show the chunks that best match a question, with scores and sources")
    p.add_argument("name", nargs="?", metavar="NAME", help="collection; given, it replaces collection: of the config file")
    p.add_argument("question")
    add_config_file(p, what="retrieval settings (RetrievalConfig keys)")
    # threshold and template shape a prompt, which a query does not build.
    add_options(p, RetrievalConfig, aliases=ALIASES, skip=("threshold", "template"), metavars=METAVARS)
    p.add_argument("--chars", type=int, default=300, help="characters of each chunk to print (default: 300)")
    p.add_argument("--json", action="store_true", help="machine-readable output, full chunk text")
    p.set_defaults(func=cmd_query, settings=True)

    p = cmds.add_parser("eval", help="measure retrieval (hit@k, MRR, nDCG@10, latency) on questions with known sources")
    p.add_argument("name", metavar="NAME", help="collection")
    p.add_argument("--data", required=True, metavar="Q.jsonl", help='questions: {"question", "relevant": [...], "reference"?} per line')
    p.add_argument("--modes", nargs="+", choices=MODES, default=["dense", "sparse", "hybrid"], help="search modes to compare (default: all three)")
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
