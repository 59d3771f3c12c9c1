"""A GGUF file run by the real llama.cpp runtime (the ``llama-cpp-python`` binding), answering
through the same ``generate`` call as ``Engine`` so eval, compare and the export's parity check
can put what a user deploys next to the run.

    from onthejob.generate.llamacpp import LlamaCpp
    llm = LlamaCpp("export/hr.q8_0.gguf")
    [c] = llm.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_new_tokens=64))

Prompts are rendered by llama-cpp-python's own Jinja formatter (the one its chat API uses) from
the chat template embedded in the file (``tokenizer.chat_template``), tokenized and decoded by
llama.cpp: nothing of onthejob's engine or tokenizer is in the path, which is the point. Decoding
goes token by token through the binding's ``generate`` so the answer's token ids come back (the
parity check compares them); it stops at llama.cpp's end-of-generation tokens, as its chat API
does. One conversation at a time (the binding holds one sequence); llama.cpp's default repeat
penalty is off, so greedy means the most likely token, as in ``Engine``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from onthejob.errors import ModelError
from onthejob.models.exported import exported_from, is_gguf  # noqa: F401 - is_gguf: one import for callers
from onthejob.generate.request import Completion
from onthejob.generate.sampling import SamplingParams

INSTALL = "pip install 'onthejob[export]' (it compiles llama.cpp: about 5 minutes on 2 cores)"


def load_gguf(path: str | Path, *, context: int = 4096):
    """A ``Loaded`` (models/adapters.py) whose model is the GGUF in llama.cpp and has no tokenizer."""
    from onthejob.models.adapters import Loaded

    made = exported_from(path)
    return Loaded(LlamaCpp(path, context=context), None, str(made.get("base") or path), None,
                  f"{path} (GGUF in llama.cpp)", made.get("system_prompt"))


class LlamaCpp:
    """One GGUF model in llama.cpp. ``context``: tokens of prompt plus answer it holds."""

    def __init__(self, path: str | Path, *, context: int = 4096, threads: int | None = None):
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise ModelError(f"running {path} with llama.cpp needs llama-cpp-python ({e})", fix=INSTALL) from e
        if not is_gguf(path):
            raise ModelError(f"{path} is not a GGUF file", fix="name a .gguf file written by ojt export or llama.cpp")
        self.path = Path(path)
        threads = threads or max(1, len(os.sched_getaffinity(0)))
        try:
            self.llm = Llama(model_path=str(path), n_ctx=context, n_threads=threads, n_threads_batch=threads,
                             n_batch=512, seed=0, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"llama.cpp cannot load {path}: {e}") from e
        self.context = context
        self._formatter = None
        self.metadata: dict[str, str] = dict(self.llm.metadata)

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's ids for ``text`` with special tokens parsed and nothing added."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt for ``messages``, rendered by the binding's Jinja formatter from the file's template."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            if not self.chat_template:
                raise ModelError(f"{self.path} holds no chat template (tokenizer.chat_template)",
                                 fix="export the run again with ojt export, which embeds it")
            text = self.llm._model.token_get_text
            bos, eos = self.llm.token_bos(), self.llm.token_eos()
            self._formatter = Jinja2ChatFormatter(template=self.chat_template, bos_token=text(bos) if bos >= 0 else "",
                                                  eos_token=text(eos) if eos >= 0 else "")
        return self._formatter(messages=messages).prompt

    def answer(self, messages: list[dict[str, Any]], params: SamplingParams) -> Completion:
        """One answer, decoded token by token until an end-of-generation token, a stop string or
        ``max_new_tokens`` (which counts the end token, as in ``Engine``)."""
        import llama_cpp

        started = time.perf_counter()
        prompt = self.tokenize(self.render(messages))
        if len(prompt) + params.max_new_tokens > self.context:
            raise ModelError(f"a prompt of {len(prompt)} tokens plus {params.max_new_tokens} new ones exceeds "
                             f"llama.cpp's context of {self.context}", fix="raise --context or ask for fewer new tokens")
        ids: list[int] = []
        finish, generated, cut_text = "length", 0, None
        for token in self.tokens(prompt, params):
            generated += 1
            if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token) and not params.ignore_eos:
                finish = "stop"
                break
            ids.append(token)
            if params.stop:
                so_far = self.detokenize(ids)
                cut = min((so_far.find(s) for s in params.stop if s in so_far), default=-1)
                if cut >= 0:
                    cut_text, finish = so_far[:cut], "stop"
                    break
            if generated >= params.max_new_tokens:
                break
        text = cut_text if cut_text is not None else self.detokenize(ids)
        return Completion(text=text, token_ids=ids, finish_reason=finish, prompt_tokens=len(prompt),
                          completion_tokens=generated, seconds=time.perf_counter() - started)

    def tokens(self, prompt: list[int], params: SamplingParams) -> Iterator[int]:
        """llama.cpp's next tokens after ``prompt`` under ``params``; its default repeat penalty is
        off, so greedy means the most likely token, as in ``Engine``."""
        self.llm.set_seed(params.seed if params.seed is not None else 0)
        greedy = params.temperature == 0
        return self.llm.generate(prompt, temp=params.temperature, top_p=params.top_p, top_k=1 if greedy else 0,
                                 min_p=0.0, repeat_penalty=1.0, reset=True)

    def detokenize(self, ids: list[int]) -> str:
        # As the engine's Detokenizer: special tokens left out, broken UTF-8 shown as U+FFFD.
        return self.llm.detokenize(ids, special=False).decode("utf-8", errors="replace")

    def generate(self, conversations: Sequence[list[dict[str, Any]]], params: SamplingParams | None = None, *,
                 progress: Callable[[int], None] | None = None, **_: Any) -> list[Completion]:
        """Answers in order, one conversation at a time (``Engine.generate``'s call)."""
        params = params or SamplingParams()
        out = []
        for conversation in conversations:
            out.append(self.answer(list(conversation), params))
            if progress:
                progress(1)
        return out


class LlamaCppEngine:
    """A GGUF behind the engine's request/batch API, so ``ojt serve --model FILE.gguf`` serves it
    through the same scheduler, HTTP surface and ``Request`` (stop strings, streaming text) as
    any model, and ``ojt chat`` / ``ojt generate`` take it (``stream``, ``generate_ids``). The
    tokenizer is transformers' reading of the file's own vocabulary and chat template; llama.cpp
    decodes. One row runs at a time (``LlamaCppBatch``)."""

    packed = False

    def __init__(self, path: str | Path, *, context: int = 4096, threads: int | None = None):
        import llama_cpp
        from transformers import AutoTokenizer

        self.cpp = LlamaCpp(path, context=context, threads=threads)
        path = Path(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot read the tokenizer in {path}: {e}") from e
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        vocab = self.cpp.llm._model.vocab
        self.stop_ids = {i for i in range(self.cpp.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)}
        self.model = _Described(context)

    def request(self, prompt: list[int], params: SamplingParams, *, tokenizer=None, adapter: str | None = None):
        from onthejob.generate.request import Request

        return Request(prompt, params, tokenizer=tokenizer or self.tokenizer, stop_ids=self.stop_ids, adapter=adapter)

    def new_batch(self, max_rows: int) -> LlamaCppBatch:
        return LlamaCppBatch(self)

    def stream(self, conversation: list[dict[str, Any]], params: SamplingParams | None = None, *, tools=None) -> Iterator[str]:
        """The reply as text deltas (``Engine.stream``'s call, for ``ojt chat FILE.gguf``)."""
        from onthejob.data.template import tokenize_prompt
        from onthejob.generate.batch import stream_request

        request = self.request(tokenize_prompt(conversation, self.tokenizer, tools=tools), params or SamplingParams())
        return stream_request(self.new_batch(1), request)

    def generate_ids(self, prompts: Sequence[list[int]], params: SamplingParams | None = None, *,
                     progress: Callable[[int], None] | None = None, **_: Any) -> list[Completion]:
        """Answers to token prompts in order (``Engine.generate_ids``' call, for ``ojt generate``)."""
        batch, out = self.new_batch(1), []
        for prompt in prompts:
            request = batch.add(self.request(list(prompt), params or SamplingParams()))
            while request.finish is None:
                batch.step()
            out.append(request.completion())
            if progress:
                progress(1)
        return out



def gguf_engine(path: str | Path):
    """(LlamaCppEngine, Loaded) for ``ojt chat`` and ``ojt generate`` on an exported GGUF."""
    from onthejob.models.adapters import Loaded

    engine = LlamaCppEngine(path)
    made = exported_from(path)
    return engine, Loaded(engine.cpp, engine.tokenizer, str(made.get("base") or path), None,
                          f"{path} (GGUF in llama.cpp)", made.get("system_prompt"))


class LlamaCppBatch:
    """The server's ``Batch`` for llama.cpp: rows run one at a time in arrival order (the binding
    holds one sequence); the rest wait. ``step`` advances the running row by one token."""

    def __init__(self, engine: LlamaCppEngine):
        self.engine = engine
        self.running: list = []
        self.waiting: list = []
        self._tokens: Iterator[int] | None = None

    def add(self, request):
        self.waiting.append(request)
        return request

    def prune(self) -> None:
        self.waiting = [r for r in self.waiting if not r.cancelled]
        if self.running and self.running[0].cancelled:
            self._close()

    def step(self) -> list:
        self.prune()
        if not self.running and self.waiting:
            row = self.waiting.pop(0)
            row.started = time.perf_counter()
            self.running, self._tokens = [row], self.engine.cpp.tokens(row.prompt, row.params)
        if not self.running:
            return []
        row = self.running[0]
        row.add(next(self._tokens))
        if row.finish is not None:
            self._close()
        return [row]

    def _close(self) -> None:
        if self._tokens is not None:
            self._tokens.close()
        self.running, self._tokens = [], None


class _Described:
    """What the scheduler reads off a model: its context length."""

    def __init__(self, context: int):
        self.config = type("Config", (), {"max_position_embeddings": context})()
