"""The Train and Runs pages' API: the training config's schema as a form, the same validation and
``ojt plan`` estimate as the CLI, launching, stopping and resuming runs, and each run's metrics.

A run is launched as ``ojt train WS/jobs/ID/config.yaml`` (the config the form made, with its
data paths resolved inside the workspace and ``output_dir`` = ``WS/runs/NAME``); Stop is the
CLI's Ctrl-C (a checkpoint, then the run ends), Resume ``ojt train --resume WS/runs/NAME``.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from onthejob import config as cfg
from onthejob.studio.routes_data import model_path
from onthejob.studio.workspace import check_name

SET_BY_PAGE = {"output_dir", "model", "data.eval"}  # chosen with their own controls, not typed
WORKSPACE_PATHS = {"data.replay.prompts", "data.augment.cache"}  # typed paths, resolved inside the workspace
MAX_METRICS = 20_000  # rows one request returns


class TrainBody(BaseModel):
    name: str
    model: str
    data: list[str] = Field(min_length=1, max_length=32)
    eval: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict, max_length=500)  # dotted key -> value (text is read as YAML)


def add_routes(app: FastAPI, studio) -> None:
    ws = studio.ws

    @app.get("/api/train/schema")
    def schema():
        from onthejob.train.config import TrainConfig

        return [_field(key, field, default) for key, field, default in cfg.leaves(TrainConfig) if key not in SET_BY_PAGE]

    @app.post("/api/train/check")
    def check(body: TrainBody):
        from onthejob.errors import ConfigError
        from onthejob.train.config import to_yaml

        try:
            config = _config(studio, body)
        except ConfigError as e:
            return {"ok": False, "error": e.message, "problems": list(getattr(e, "problems", None) or [])}
        return {"ok": True, "yaml": to_yaml(config)}

    @app.post("/api/train/plan")
    def plan(body: TrainBody):
        from onthejob.train.plan import plan_report

        estimates, text = plan_report(_config(studio, body))
        return {"text": text, "estimates": [e.to_dict() for e in estimates]}

    @app.post("/api/train")
    def train(body: TrainBody):
        from onthejob.errors import ConfigError
        from onthejob.train.config import to_yaml

        config = _config(studio, body)
        run = Path(config.output_dir)
        if run.exists() and any(run.iterdir()):
            raise ConfigError(f"a run named {body.name!r} exists", fix="pick another name, or resume it from the Runs page")
        if _active(studio, body.name):
            raise ConfigError(f"run {body.name!r} is already queued or training", fix="wait for it, or stop it first")
        return studio.jobs.submit("train", ["train", "{job}/config.yaml"], title=f"train {body.name}", meta={"run": body.name},
                                  files={"config.yaml": to_yaml(config)})

    @app.post("/api/runs/{name}/resume")
    def resume(name: str):
        from onthejob.errors import ConfigError

        run = ws.run_dir(name)
        if not (run / "run.json").is_file():
            raise KeyError(name)
        if _active(studio, name):
            raise ConfigError(f"run {name!r} is already queued or training", fix="wait for it, or stop it first")
        return studio.jobs.submit("train", ["train", "--resume", str(run)], title=f"resume {name}", meta={"run": name})

    @app.get("/api/runs")
    def runs():
        out = []
        for run in sorted((ws.root / "runs").iterdir()):
            if run.is_dir() and not run.name.startswith("."):
                out.append(_summary(studio, run))
        return out

    @app.get("/api/runs/{name}")
    def run_detail(name: str):
        run = ws.run_dir(name)
        if not run.is_dir():
            raise KeyError(name)
        reports = {kind: ws.rel(run / kind / "report.json") for kind in ("eval", "compare") if (run / kind / "report.json").is_file()}
        config = (run / "config.yaml").read_text() if (run / "config.yaml").is_file() else ""
        compares = [{k: j[k] for k in ("id", "title", "status", "created")} for j in studio.jobs.list("compare") if j["meta"].get("run") == name]
        return {**_summary(studio, run), "config": config, "reports": reports, "compares": compares, "metrics": _metrics(run)}

    @app.get("/api/runs/{name}/metrics")
    def metrics(name: str, after: int = -1):
        run = ws.run_dir(name)
        return [r for r in _metrics(run) if (r.get("step") or 0) > after][:MAX_METRICS]


def _config(studio, body: TrainBody):
    """The TrainConfig the form describes, validated as ``ojt train`` validates a YAML file."""
    from onthejob.train.config import validate

    ws = studio.ws
    raw: dict[str, Any] = {}
    for key, value in body.settings.items():
        if key in SET_BY_PAGE or value is None or value == "":
            continue
        if isinstance(value, str):
            value = cfg.yaml_value(value)
        if key in WORKSPACE_PATHS:
            value = str(ws.path(str(value)))
        cfg.set_dotted(raw, key, value)
    raw = cfg.merge(raw, {"model": model_path(studio, body.model), "output_dir": str(ws.run_dir(check_name(body.name, "run name")))})
    data = raw.setdefault("data", {})
    data["train"] = [{"path": str(ws.path(p))} for p in body.data]
    if body.eval:
        data["eval"] = str(ws.path(body.eval))
    if isinstance(data.get("rag"), dict):
        data["rag"]["store"] = ws.rag_store  # the workspace's collections
    return validate(raw, source="training settings")


def _field(key: str, field, default) -> dict[str, Any]:
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    plain = args[0] if len(args) == 1 else annotation
    kind, choices = "text", None
    if typing.get_origin(plain) is typing.Literal:
        kind, choices = "choice", list(typing.get_args(plain))
    elif plain is bool:
        kind = "bool"
    elif plain in (int, float):
        kind = plain.__name__
    if isinstance(default, Path):
        default = str(default)
    elif isinstance(default, tuple):
        default = list(default)
    return {"key": key, "kind": kind, "choices": choices, "default": default, "nullable": type(None) in typing.get_args(annotation),
            "description": field.description or "", "section": key.split(".")[0] if "." in key else ""}


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the line being written
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _summary(studio, run: Path) -> dict[str, Any]:
    info = {}
    if (run / "run.json").is_file():
        try:
            info = json.loads((run / "run.json").read_text())
        except ValueError:
            info = {}
    jobs = [j for j in studio.jobs.list("train") if j["meta"].get("run") == run.name]
    latest = jobs[0] if jobs else None
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []
    status = info.get("status", "unknown")
    if latest and latest["status"] in ("queued", "running"):
        status = latest["status"]
    elif status == "running":  # its process is gone: stopped from the page, or killed
        status = "stopped" if checkpoints else "killed"
    return {"name": run.name, "status": status, "base_model": info.get("base_model"), "method": info.get("method"),
            "steps": info.get("steps"), "checkpoint": checkpoints[-1] if checkpoints else None,
            "resumable": bool(checkpoints) and status in ("stopped", "killed", "failed"), "final": (run / "final").is_dir(),
            "job": latest["id"] if latest else None, "started": info.get("started")}


def _active(studio, name: str) -> bool:
    return any(j["meta"].get("run") == name and j["status"] in ("queued", "running") for j in studio.jobs.list("train"))
