"""The studio's web app: the pages (plain HTML, CSS and JavaScript in ``static/``, nothing from
the internet) and the JSON API behind them, one ``routes_*.py`` per page.

    ojt studio --workspace studio        # http://127.0.0.1:8765

Every API call needs the token when one is set (``Authorization: Bearer TOKEN``, or the cookie
the page sets once it has it); the pages themselves hold no data and load without it. A user's
mistake comes back as HTTP 400 with ``{"error": "...one line, with how to fix it"}``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from onthejob import __version__
from onthejob.errors import OjtError
from onthejob.studio.config import StudioConfig
from onthejob.studio.jobs import Jobs
from onthejob.studio.workspace import Workspace

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "ojt_studio_token"
log = logging.getLogger("onthejob.studio")


@dataclass
class Studio:
    """What every route works with: the config, the workspace and its jobs."""

    config: StudioConfig
    ws: Workspace
    jobs: Jobs

    @property
    def upload_limit(self) -> int:
        return self.config.max_upload_mb * 1_000_000


def create_app(config: StudioConfig) -> FastAPI:
    from onthejob.studio import routes_chat, routes_compare, routes_data, routes_docs, routes_train

    ws = Workspace(config.workspace)
    studio = Studio(config, ws, Jobs(ws.root / "jobs", ws.db, max_running=config.max_running))
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        studio.jobs.close()  # the watcher thread; the jobs themselves go on running

    app = FastAPI(title="onthejob studio", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.studio = studio

    @app.middleware("http")
    async def token(request: Request, call_next):
        key = config.api_key
        if key and request.url.path.startswith("/api/") and not _authorized(request, key):
            return JSONResponse({"error": "this studio needs its token (open the address ojt studio printed)"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(OjtError)
    async def user_error(_request: Request, e: OjtError):
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, e: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'request'}: {err.get('msg', 'invalid')}" for err in e.errors()]
        return JSONResponse({"error": "; ".join(problems[:5])}, status_code=400)

    @app.exception_handler(KeyError)
    async def not_found(_request: Request, e: KeyError):
        return JSONResponse({"error": f"not found: {e.args[0] if e.args else ''}"}, status_code=404)

    @app.exception_handler(ValueError)
    async def bad_value(_request: Request, e: ValueError):
        return JSONResponse({"error": str(e)}, status_code=400)

    _common_routes(app, studio)
    for module in (routes_data, routes_train, routes_compare, routes_chat, routes_docs):
        module.add_routes(app, studio)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
    return app


def _authorized(request: Request, key: str) -> bool:
    given = request.headers.get("authorization", "")
    token = given[7:] if given.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
    return hmac.compare_digest(token.encode(), key.encode())


def _common_routes(app: FastAPI, studio: Studio) -> None:
    ws = studio.ws

    @app.get("/api/info")
    def info():
        from onthejob.models.listing import list_models

        local = sorted(f"models/{d.name}" for d in (ws.root / "models").glob("*") if d.is_dir() and not d.name.startswith("."))
        return {"version": __version__, "workspace": str(ws.root), "models": [m["name"] for m in list_models()] + local,
                "max_upload_mb": studio.config.max_upload_mb}

    @app.get("/api/files")
    def files(folder: str = "uploads"):
        return ws.files(folder)

    @app.put("/api/files/{name}")
    async def upload(name: str, request: Request):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > studio.upload_limit:  # refused before a byte is read
            chunks = _nothing()
        else:
            chunks = request.stream()
        path = await ws.save_upload(name, chunks, limit=studio.upload_limit, declared=int(declared) if declared.isdigit() else None)
        return {"path": ws.rel(path), "bytes": path.stat().st_size}

    @app.get("/api/file")
    def file(path: str):
        """A workspace file as it is (a report.html opens in its own tab)."""
        target = ws.path(path)
        if not target.is_file():
            raise KeyError(path)
        kind = mimetypes.guess_type(target.name)[0] or "text/plain"
        if kind == "text/html" and not ws.rel(target).startswith("jobs/"):
            kind = "text/plain"  # an uploaded page is shown as text, never run on the studio's origin
        if kind.startswith("text/") or kind == "application/json":
            kind += "; charset=utf-8"
        # Reports run in a sandbox: their scripts get an origin of their own, not the studio's token.
        headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox allow-scripts"}
        return Response(target.read_bytes(), media_type=kind, headers=headers)

    @app.get("/api/jobs")
    def jobs(kind: str | None = None):
        return studio.jobs.list(kind)

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str):
        return studio.jobs.get(job_id)

    @app.get("/api/jobs/{job_id}/log")
    def job_log(job_id: str, offset: int = 0):
        text, end = studio.jobs.log(job_id, offset)
        return {"text": text, "offset": end}

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: str):
        return studio.jobs.stop(job_id)


async def _nothing():
    return
    yield b""


def run(config: StudioConfig) -> int:
    import uvicorn

    app = create_app(config)
    where = f"http://{config.host}:{config.port}/" + (f"#token={config.api_key}" if config.api_key else "")
    print(f"onthejob studio on {where}  (workspace {Path(config.workspace).resolve()}; Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return 0
