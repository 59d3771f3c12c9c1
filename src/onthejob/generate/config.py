"""The configs of the two generation stages: ``ojt chat`` and ``ojt generate``.

    ojt generate runs/hr-demo --input questions.jsonl --out answers.jsonl --temperature 0.7
    ojt generate --config generate.yaml --batch-size 4

Both take the shared ``sampling`` section (generate/sampling.py) and a ``rag`` section
(onthejob.rag.config.RetrievalConfig) that answers from a document collection when it names one.
"""

from __future__ import annotations

from pydantic import Field

from onthejob.config import Section
from onthejob.generate.sampling import SamplingParams
from onthejob.models.registry import DEFAULT_MODEL
from onthejob.rag.config import RAG_FLAGS, RAG_METAVARS, RAG_SKIP, RetrievalConfig  # noqa: F401 - the flags of every stage

MODEL_HELP = "a run folder, an adapter or model folder, or a model name"
# The short flags of the sampling and rag sections, beside their --sampling.KEY / --rag.KEY forms
# (RAG_FLAGS: onthejob.rag.config).
SAMPLING_FLAGS = {"sampling.max_new_tokens": "--max-new-tokens", "sampling.temperature": "--temperature",
                  "sampling.top_p": "--top-p", "sampling.stop": "--stop"}
METAVARS = {**RAG_METAVARS, "sampling.stop": "TEXT"}


class GenerateConfig(Section):
    """``ojt generate``: answer every conversation of a JSONL file."""

    model: str = Field(DEFAULT_MODEL, description=MODEL_HELP)
    input: str = Field(description="chat JSONL: conversations without their final answer")
    out: str = Field(description="output JSONL: the same records with the answer appended (written atomically)")
    batch_size: int = Field(8, ge=1, le=1024, description="conversations answered together")
    json_schema: str | None = Field(None, description="a JSON Schema file every answer must follow (constrained decoding: each answer parses and validates)")
    sampling: SamplingParams = Field(default_factory=SamplingParams, description="how tokens are picked and when answers stop")
    rag: RetrievalConfig = Field(default_factory=RetrievalConfig, description="answer from a document collection's passages (rag.collection), citing them")


class ChatConfig(Section):
    """``ojt chat``: a conversation in the terminal with a model, a run, or a server."""

    model: str | None = Field(None, description=MODEL_HELP + "; with url, the served model's name (none = the server's first)")
    system: str | None = Field(None, description="system prompt for the conversation; none = the one the run was trained with")
    url: str | None = Field(None, description="talk to a running ojt serve (or any OpenAI-compatible API) instead, e.g. http://127.0.0.1:8000/v1")
    api_key: str | None = Field(None, description="with url: the API key; none = $ONTHEJOB_API_KEY")
    sampling: SamplingParams = Field(default_factory=SamplingParams, description="how tokens are picked and when answers stop")
    rag: RetrievalConfig = Field(default_factory=RetrievalConfig, description="answer from a document collection's passages (rag.collection), citing them")
