"""The Documents and Serve pages' API: the workspace's RAG collections (index as a job, list,
delete, try a query) and ``ojt serve`` started and stopped as a job."""

from __future__ import annotations


from fastapi import FastAPI
from pydantic import BaseModel, Field

from onthejob.studio.workspace import check_name


class IndexBody(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=10_000)
    chunk_tokens: int = Field(256, ge=16, le=8192)


class QueryBody(BaseModel):
    question: str = Field(min_length=1, max_length=10_000)
    k: int = Field(5, ge=1, le=100)


class ServeBody(BaseModel):
    adapters: dict[str, str] = Field(default_factory=dict, max_length=64)  # served name -> run
    model: str | None = None
    port: int = Field(8000, ge=1024, le=65535)


def add_routes(app: FastAPI, studio) -> None:
    ws = studio.ws

    @app.get("/api/collections")
    def collections():
        from onthejob.rag.stores import open_store

        with open_store(ws.rag_store) as store:
            return [{"name": i.name, "documents": i.documents, "chunks": i.chunks, "embed_model": i.embed_model,
                     "size_bytes": i.size_bytes} for i in store.list()]

    @app.get("/api/collections/{name}")
    def collection(name: str):
        from onthejob.rag.stores import open_store

        with open_store(ws.rag_store) as store:
            return {"name": name, "documents": {doc: len(store.doc_chunks(name, doc)) for doc in store.documents(name)}}

    @app.post("/api/collections/{name}/index")
    def index(name: str, body: IndexBody):
        name = check_name(name, "collection name")
        argv = ["rag", "index", *[str(ws.path(p)) for p in body.paths], "--collection", name, "--store", ws.rag_store,
                "--chunk-tokens", str(body.chunk_tokens)]
        return studio.jobs.submit("index", argv, title=f"index {len(body.paths)} file(s) into {name}", meta={"collection": name})

    @app.delete("/api/collections/{name}")
    def delete(name: str):
        from onthejob.rag.stores import open_store

        with open_store(ws.rag_store) as store:
            store.delete(name)
        return {"deleted": name}

    @app.post("/api/collections/{name}/query")
    def query(name: str, body: QueryBody):
        from onthejob.rag.answer import Retriever
        from onthejob.rag.config import RetrievalConfig

        with Retriever(RetrievalConfig(collection=name, store=ws.rag_store, k=body.k)) as retriever:
            hits = retriever.search(body.question)
        return [{"rank": h.rank, "score": h.score, "dense": h.dense, "sparse": h.sparse, "doc": ws.rel(h.chunk.doc) if _inside(ws, h.chunk.doc) else h.chunk.doc,
                 "page": h.chunk.meta.get("page"), "heading": h.chunk.meta.get("heading"), "text": h.chunk.text} for h in hits]

    @app.post("/api/serve")
    def serve(body: ServeBody):
        from onthejob.errors import ConfigError
        from onthejob.studio.routes_data import model_path

        if any(j["status"] in ("queued", "running") and j["meta"].get("port") == body.port for j in studio.jobs.list("serve")):
            raise ConfigError(f"a server of this studio already listens on port {body.port}", fix="stop it first, or pick another port")
        argv = ["serve", "--port", str(body.port), "--feedback_db", str(ws.root / "serve" / "feedback.sqlite")]
        for served, run in body.adapters.items():
            check_name(served, "served name")
            argv += ["--adapter", f"{served}={ws.run_dir(run)}"]
        base = model_path(studio, body.model) if body.model else _base_of(ws, list(body.adapters.values()))
        if base:
            argv += ["--model", base]
        return studio.jobs.submit("serve", argv, title=f"serve {', '.join(body.adapters) or 'the base model'} on port {body.port}",
                                  meta={"port": body.port, "adapters": list(body.adapters)})


def _base_of(ws, runs: list[str]) -> str | None:
    """The base model the runs were trained on (run.json), which the server must load; one only."""
    import json

    from onthejob.errors import ConfigError

    bases = set()
    for run in runs:
        info = ws.run_dir(run) / "run.json"
        if not info.is_file():
            raise KeyError(f"run {run}")
        bases.add(json.loads(info.read_text()).get("base_model"))
    bases.discard(None)
    if len(bases) > 1:
        raise ConfigError(f"the runs sit on different base models ({', '.join(sorted(bases))})",
                          fix="serve runs of one base model together")
    return bases.pop() if bases else None


def _inside(ws, doc: str) -> bool:
    try:
        ws.rel(doc)
        return True
    except ValueError:
        return False


