"""The Data page's API: check a file, preview its masks, convert and split it, synthesize from
documents. Each route calls the function ``ojt data ...`` calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from onthejob.models.registry import DEFAULT_MODEL

MAX_PREVIEW = 20  # examples one preview renders


class ReadOptions(BaseModel):
    path: str
    format: str | None = None
    map: dict[str, str] | None = None  # CSV column -> role
    system: str | None = Field(None, max_length=10_000)

    def read_kwargs(self) -> dict[str, Any]:
        return {"format": self.format or None, "mapping": self.map or None, "system": self.system or None}


class CheckBody(ReadOptions):
    model: str = DEFAULT_MODEL
    train_on: str = "all"
    max_seq_len: int = Field(2048, ge=16, le=131_072)


class PreviewBody(CheckBody):
    n: int = Field(3, ge=1, le=MAX_PREVIEW)
    start: int = Field(0, ge=0, le=10_000_000)
    line: int | None = Field(None, ge=1)  # start at the example on this line (a problem's link)


class SplitBody(ReadOptions):
    eval_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0


class SynthBody(BaseModel):
    documents: list[str] = Field(min_length=1, max_length=1000)
    name: str = "synth"
    teacher: str | None = None  # a model name or workspace folder; with teacher_url, the endpoint's model name
    teacher_url: str | None = Field(None, max_length=2000)  # an OpenAI-compatible endpoint
    teacher_key_env: str | None = Field(None, max_length=200)  # the environment variable holding its key
    style: str | None = Field(None, max_length=1000)
    system: str | None = Field(None, max_length=10_000)


def add_routes(app: FastAPI, studio) -> None:
    ws = studio.ws

    @app.post("/api/data/check")
    def check(body: CheckBody):
        from onthejob.data.check import check_file, report_to_json

        tokenizer = _tokenizer(studio, body.model)
        report = check_file(ws.path(body.path), tokenizer=tokenizer, max_seq_len=body.max_seq_len, train_on=body.train_on,
                            **body.read_kwargs())
        out = report_to_json(report)
        out["file"] = body.path
        for p in out["problems"]:
            p["source"] = body.path  # the workspace path, not the server's
        return out

    @app.post("/api/data/preview")
    def preview(body: PreviewBody):
        from onthejob.data.preview import token_runs
        from onthejob.data.readers import read_examples

        result = read_examples(ws.path(body.path), **body.read_kwargs())
        tokenizer = _tokenizer(studio, body.model)
        examples = result.examples if body.line is None else [e for e in result.examples if e.line >= body.line]
        shown = examples[body.start: body.start + body.n]
        return {"total": len(result.examples), "examples": [
            {"where": f"{body.path}:{e.line}", "line": e.line, **token_runs(e, tokenizer, train_on=body.train_on)} for e in shown]}

    @app.post("/api/data/convert")
    def convert(body: ReadOptions):
        from onthejob.data.readers import convert as convert_file

        out = ws.root / "datasets" / (Path(body.path).stem + ".jsonl")
        n = convert_file(ws.path(body.path), out, **body.read_kwargs())
        return {"examples": n, "path": ws.rel(out)}

    @app.post("/api/data/split")
    def split(body: SplitBody):
        from onthejob.data.split import split_file

        stem = Path(body.path).stem
        train, held = ws.root / "datasets" / f"{stem}-train.jsonl", ws.root / "datasets" / f"{stem}-eval.jsonl"
        n_train, n_eval = split_file(ws.path(body.path), train_out=train, eval_out=held, eval_fraction=body.eval_fraction,
                                     seed=body.seed, **body.read_kwargs())
        return {"train": {"path": ws.rel(train), "examples": n_train}, "eval": {"path": ws.rel(held), "examples": n_eval}}

    @app.post("/api/data/synth")
    def synth(body: SynthBody):
        from onthejob.studio.workspace import check_name

        name = check_name(body.name, "dataset name")
        train, held = ws.root / "datasets" / f"{name}-train.jsonl", ws.root / "datasets" / f"{name}-eval.jsonl"
        argv = ["data", "synth", *[str(ws.path(d)) for d in body.documents], "--out", str(train), "--eval-out", str(held)]
        teacher = body.teacher if body.teacher_url or not body.teacher else model_path(studio, body.teacher)
        for flag, value in (("--teacher-model", teacher), ("--teacher-url", body.teacher_url),
                            ("--teacher-key-env", body.teacher_key_env), ("--style", body.style), ("--system", body.system)):
            if value:
                argv += [flag, value]
        return studio.jobs.submit("synth", argv, title=f"synthesize {name} from {len(body.documents)} document(s)",
                                  meta={"outputs": [ws.rel(train), ws.rel(held)]})


def _tokenizer(studio, model: str):
    from onthejob.models.load import load_tokenizer

    return load_tokenizer(model_path(studio, model))


def model_path(studio, model: str) -> str:
    """A model the browser names: a known model, or a folder inside the workspace; nothing else."""
    from onthejob.models.registry import KNOWN

    if model in KNOWN:
        return model
    return str(studio.ws.path(model))
