"""Generation: the one engine (``engine.py``: prefill, step, generate, stream) that chat, batch
generation, eval, RAG answers and the server all call; its rows (``request.py``), the decode
loop that batches them (``batch.py``), sampling (``sampling.py``), the key/value cache
(``cache.py``), CPU decode kernels (``skinny.py``), interactive chat (``chat.py``) and batch
generation over a file (``files.py``)."""

from onthejob.generate.engine import Engine
from onthejob.generate.request import Completion, Request
from onthejob.generate.sampling import SamplingParams

__all__ = ["Completion", "Engine", "Request", "SamplingParams"]
