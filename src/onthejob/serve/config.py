"""The serving config: what ``ojt serve`` serves, where it listens, and the limits it holds to.

    ojt serve serve.yaml --port 8001          # any key of the file can be set as a flag

Every default is written here once: the command's flags, the scheduler and the HTTP layer all
read this model (docs/config.md lists every key).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from onthejob.config import Section, cross_field
from onthejob.generate.sampling import MAX_NEW_TOKENS
from onthejob.models.registry import DEFAULT_MODEL


class ServeConfig(Section):
    """What one server serves and accepts."""

    model: str = Field(DEFAULT_MODEL, description="the base model every adapter sits on: a known name, a model folder or a hub id; or a GGUF file (ojt export), served by llama.cpp without adapters")
    adapters: dict[str, str] = Field(default_factory=dict, description="served name -> a trained run (or adapter folder) on the base model")
    rag: dict[str, str] = Field(default_factory=dict, description="served name -> a RAG collection its answers are retrieved from")
    adapter_dirs: list[Path] = Field(default_factory=lambda: [Path("runs")], description="folders that POST /admin/adapters may load adapters from")
    api_key: str | None = Field(None, description="require this key (Authorization: Bearer KEY); none = $ONTHEJOB_API_KEY; needed for /admin")
    host: str = Field("127.0.0.1", description="address to listen on; 127.0.0.1 is this machine only")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    max_batch: int = Field(32, ge=1, le=1024, description="answers generated together in one forward pass")
    max_queue: int = Field(64, ge=1, le=100_000, description="answers waiting beyond the batch before requests get 429")
    max_tokens: int = Field(2048, ge=1, le=MAX_NEW_TOKENS, description="the most tokens one answer may ask for")
    max_request_bytes: int = Field(1_000_000, ge=1, le=1 << 30, description="largest request body before 413")
    read_timeout: float = Field(30.0, gt=0, le=3600, description="seconds a request's headers and body may take to arrive before its connection is dropped")
    timeout: float = Field(600.0, gt=0, le=86_400, description="seconds one request may take before it is stopped")
    feedback_db: Path | None = Field(Path("serve/feedback.sqlite"), description="where every chat answer is kept for POST /v1/feedback and ojt data from-feedback (an SQLite file); none = keep nothing")
    max_answers: int = Field(100_000, ge=1, le=100_000_000, description="answers kept for feedback; past it the oldest without feedback go")
    device: str | None = Field(None, description="cpu, cuda, cuda:1 ...; none = cuda when there is one, else cpu")

    @model_validator(mode="after")
    def _names_once(self) -> ServeConfig:
        both = sorted(set(self.adapters) & set(self.rag))
        if both:
            raise cross_field(("adapters, rag", f"{', '.join(both)} named in both; give each served name once"))
        return self
