"""Generation: one engine (``engine.py``) that chat, batch generation, eval, RAG and the server
all call, plus the interactive chat (``chat.py``) and batch generation (``generate.py``) over it."""

from onthejob.serve.engine import Completion, Engine, SamplingParams

__all__ = ["Completion", "Engine", "SamplingParams"]
