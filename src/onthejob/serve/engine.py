"""The one generation engine: chat, batch generation, eval, RAG and the server all call it.

    from onthejob.models.adapters import load_for_inference
    from onthejob.serve.engine import Engine, SamplingParams
    loaded = load_for_inference("runs/support")
    engine = Engine(loaded.model, loaded.tokenizer)
    [c] = engine.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_new_tokens=64))

Why our own loop rather than ``model.generate``: a row that finishes leaves the batch at once
(``generate`` keeps computing finished rows until the longest one ends), stop strings trim the
text, and streaming, batching and seeding behave the same for a plain model and a PEFT model.
It is also faster on a CPU: the key/value cache is filled in place instead of copied every step
(serve/cache.py) and decode steps' linears use the kernels that stream weights fastest
(serve/skinny.py).
Greedy output equals ``model.generate(do_sample=False)`` token for token (tests/serve).

Per step the batch holds only unfinished rows: prompts are left-padded to one length, so the
next token of every row sits in the last column and one (b, 1) forward extends all of them.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from onthejob.data.template import end_of_turn_ids, tokenize_prompt
from onthejob.errors import ConfigError
from onthejob.serve import skinny

FinishReason = Literal["stop", "length"]


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop."""

    max_new_tokens: int = 256  # tokens generated per answer at most (the end-of-turn token counts)
    temperature: float = 0.0  # 0 = greedy (argmax); higher = more random
    top_p: float = 1.0  # nucleus sampling: sample from the smallest set of tokens with this mass
    stop: list[str] = field(default_factory=list)  # stop at the first of these; text is cut before it
    seed: int | None = None  # same seed + same prompts = same samples; None = unseeded
    ignore_eos: bool = False  # go on past end-of-turn tokens (kept in token_ids); for benchmarks

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens: {self.max_new_tokens} (must be at least 1)")
        if self.temperature < 0:
            problems.append(f"temperature: {self.temperature} (must be 0 for greedy, or positive)")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p: {self.top_p} (must be in (0, 1])")
        if any(not s for s in self.stop):
            problems.append("stop: an empty stop string would stop at once")
        if problems:
            raise ConfigError("invalid sampling parameters", problems)


@dataclass
class Completion:
    """One generated answer."""

    text: str  # decoded without special tokens, cut before a stop string
    token_ids: list[int]  # generated ids, without the end-of-turn token
    finish_reason: FinishReason  # "stop": end of turn or stop string; "length": max_new_tokens
    prompt_tokens: int
    completion_tokens: int  # tokens the model generated, the end-of-turn token included
    seconds: float  # from the start of its batch until this row finished


class Engine:
    """Generates with a causal LM (plain or PEFT) and its tokenizer; see the module docstring.

    dtype: "float32" runs as the weights are; "bfloat16" runs under bf16 autocast; "auto" uses
    bf16 autocast on a GPU that supports it and plain float32 elsewhere (CPU bf16 is slower).
    """

    def __init__(self, model, tokenizer, *, dtype: str = "auto"):
        if dtype not in ("float32", "bfloat16", "auto"):
            raise ConfigError(f"dtype: {dtype!r} (use float32, bfloat16 or auto)")
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.autocast = dtype == "bfloat16" or (
            dtype == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        )
        self.pad_id = _first_not_none(tokenizer.pad_token_id, tokenizer.eos_token_id, 0)
        self.stop_ids = set(end_of_turn_ids(tokenizer)) | _config_eos(model)
        self._forward_kwargs = _forward_kwargs(model)
        # Decode steps' linears on a CPU: float32 as W @ x.T, bf16 on prepacked weights (serve/skinny.py)
        self._skinny = skinny.Skinny(model) if self.device.type == "cpu" and not self.autocast else contextlib.nullcontext

    # --- public API -------------------------------------------------------------------------

    def generate(
        self,
        conversations: Sequence[list[dict[str, Any]]],
        params: SamplingParams | None = None,
        *,
        tools: list[dict] | None = None,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Completion]:
        """One completion per conversation, in input order (each ends with the assistant reply)."""
        prompts = [tokenize_prompt(c, self.tokenizer, tools=tools) for c in conversations]
        return self.generate_ids(prompts, params, batch_size=batch_size, progress=progress)

    def stream(
        self, conversation: list[dict[str, Any]], params: SamplingParams | None = None, *, tools=None
    ) -> Iterator[str]:
        """Yield the reply as text deltas; their concatenation equals ``generate``'s text.

        Text that could be the start of a stop string is held back until it is known not to be."""
        params = params or SamplingParams()
        prompt = tokenize_prompt(conversation, self.tokenizer, tools=tools)
        row = _Row(0, len(prompt), _Detokenizer(self.tokenizer), time.perf_counter())
        for _ in self._decode([prompt], [row], params, self._generator(params.seed)):
            delta = row.ready(params.stop)
            if delta:
                yield delta

    def generate_ids(
        self,
        prompt_ids: Sequence[list[int]],
        params: SamplingParams | None = None,
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Completion]:
        """The core: complete raw token prompts, ``batch_size`` at a time (None = all at once).

        ``progress(n)`` is called as n more rows finish (``tqdm.update`` fits)."""
        params = params or SamplingParams()
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("an empty prompt cannot be completed")
        # Longest first: rows of similar length share a batch (less padding), and a batch too big
        # for memory fails at the start rather than after an hour.
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
        size = batch_size or max(1, len(order))
        generator = self._generator(params.seed)
        results: list[Completion | None] = [None] * len(order)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            t0 = time.perf_counter()
            rows = [_Row(i, len(prompt_ids[i]), _Detokenizer(self.tokenizer), t0) for i in chunk]
            for step_rows in self._decode([prompt_ids[i] for i in chunk], rows, params, generator):
                done = sum(1 for r in step_rows if r.finish)
                if progress and done:
                    progress(done)
            for row in rows:
                results[row.index] = row.completion()
        return results  # type: ignore[return-value]

    # --- the decode loop --------------------------------------------------------------------

    def _decode(self, prompts, rows, params, generator) -> Iterator[list[_Row]]:
        """Prefill, then one token per step for the rows still running; yields those rows.

        Inference mode is entered per step, never held across a yield: it is thread state, and
        the caller's code runs between yields (a stream consumer printing, a trainer evaluating).
        """
        with _eval_mode(self.model):
            with torch.inference_mode():
                ids, mask = self._left_pad(prompts)  # (B, T) each
                # Positions count real tokens only, so a left-padded row sees the positions it
                # would see alone (HF generate does the same). Pad positions are never attended.
                pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
                cache = _new_cache(self.model, params.max_new_tokens)
            alive = list(range(len(rows)))  # indexes into rows, in batch order
            while True:
                with torch.inference_mode():
                    tokens = _pick(self._forward(ids, mask, pos, cache), params, generator)  # (b,)
                for r, token in zip(alive, tokens.tolist()):
                    rows[r].add(token, self.stop_ids, params)
                yield [rows[r] for r in alive]
                keep = [j for j, r in enumerate(alive) if rows[r].finish is None]
                if not keep:
                    return
                with torch.inference_mode():
                    if len(keep) < len(alive):  # drop finished rows from every per-row tensor
                        index = torch.tensor(keep, device=self.device)
                        cache.batch_select_indices(index)
                        mask, pos, tokens = mask[index], pos[index], tokens[index]
                        alive = [alive[j] for j in keep]
                    ids = tokens[:, None]  # (b, 1)
                    pos = pos[:, -1:] + 1  # (b, 1)
                    mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)  # (b, past + 1)

    def _forward(self, ids, mask, pos, cache, adapter_names: list[str] | None = None) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)
        # PEFT LoRA takes one adapter name per row ("__base__" = none): mixed-adapter batches.
        per_row = {"adapter_names": adapter_names} if adapter_names is not None else {}
        with autocast, self._skinny():
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                **{self._forward_kwargs["cache"]: cache}, **self._forward_kwargs["extra"], **per_row,
            )
        return out.logits[:, -1, :].float()  # (b, V): only the last position predicts

    def _left_pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def stop_ids_for(self, tokenizer) -> set[int]:
        """End-of-turn ids of another tokenizer (an adapter's own chat template) on this model."""
        return set(end_of_turn_ids(tokenizer)) | _config_eos(self.model)

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(seed)


# --- continuous batching (the server) ----------------------------------------------------------


class Request:
    """One row of a ``Batch``: its prompt, parameters, tokenizer, adapter and state so far."""

    def __init__(self, engine: Engine, prompt: list[int], params: SamplingParams, *, tokenizer=None,
                 adapter: str | None = None):
        if not prompt:
            raise ValueError("an empty prompt cannot be completed")
        tokenizer = tokenizer or engine.tokenizer
        self.prompt, self.params, self.adapter = prompt, params, adapter
        self.stop_ids = engine.stop_ids if tokenizer is engine.tokenizer else engine.stop_ids_for(tokenizer)
        self.generator = engine._generator(params.seed)
        self.row = _Row(0, len(prompt), _Detokenizer(tokenizer), time.perf_counter())
        self.cancelled = False  # set from any thread; the batch drops the row at its next step

    @property
    def finish(self) -> FinishReason | None:
        return self.row.finish

    def ready(self) -> str:
        """Text not yet handed out (held back while it may be the start of a stop string)."""
        return self.row.ready(self.params.stop)

    def completion(self) -> Completion:
        return self.row.completion()


class Batch:
    """Rows that join and leave between steps: continuous batching for the server.

    ``step()`` runs one (b, 1) forward for the running rows, then prefills the rows that joined
    since and merges them in: both caches are left-padded to one past length (padding masked
    out, as in ``_decode``) and stacked. Rows of different PEFT adapters share every forward
    (``adapter_names``). Not thread-safe: one thread adds and steps; ``cancelled`` may be set
    from anywhere. A cache whose layers are not plain ``DynamicLayer`` (sliding windows) cannot
    be merged, so there new rows wait until the batch is empty.
    """

    JOIN_WAIT = 4  # steps a waiting row may wait for others before it joins alone

    def __init__(self, engine: Engine, *, max_rows: int = 32):
        self.engine, self.max_rows = engine, max_rows
        self._waited = 0  # steps the oldest waiting row has waited
        self.running: list[Request] = []
        self.waiting: list[Request] = []
        self._state: tuple | None = None  # (next ids (b, 1), mask (b, past + 1), pos (b, 1), cache)

    def add(self, request: Request) -> Request:
        self.waiting.append(request)
        return request

    def step(self) -> list[Request]:
        """Advance every running row one token and admit waiting rows; returns the rows that
        advanced (a finished row is in it once, then gone)."""
        self.waiting = [r for r in self.waiting if not r.cancelled]
        self._keep([not r.cancelled for r in self.running])
        stepped: list[Request] = []
        with _eval_mode(self.engine.model), torch.inference_mode():
            if self.running:
                ids, mask, pos, cache = self._state
                logits = self.engine._forward(ids, mask, pos, cache, self._adapters(self.running))
                self._state = self._advance(self.running, logits, mask, pos, cache)
                stepped += self.running
            room = self.max_rows - len(self.running)
            if self.waiting and room > 0 and self._time_to_join():
                joining, self.waiting = self.waiting[:room], self.waiting[room:]
                self._join(joining)
                stepped += joining
            self._keep([r.finish is None for r in self.running])
        return stepped

    def _time_to_join(self) -> bool:
        """Admit waiting rows now, or let more gather first? Each join costs a prefill forward and
        a copy of the whole cache, so on a busy batch rows join in groups: when a quarter of the
        batch is waiting, or when the first of them has waited ``JOIN_WAIT`` steps."""
        if not self.running:
            return True
        if not _mergeable(self._state[3]):
            return False
        self._waited += 1
        if len(self.waiting) * 4 >= len(self.running) or self._waited > self.JOIN_WAIT:
            self._waited = 0
            return True
        return False

    def prune(self) -> None:
        """Drop cancelled rows now (``step`` does it first anyway)."""
        self.waiting = [r for r in self.waiting if not r.cancelled]
        self._keep([not r.cancelled for r in self.running])

    def _join(self, joining: list[Request]) -> None:
        ids, mask = self.engine._left_pad([r.prompt for r in joining])  # (j, T)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = _new_cache(self.engine.model, max(r.params.max_new_tokens for r in joining))
        logits = self.engine._forward(ids, mask, pos, cache, self._adapters(joining))
        state = self._advance(joining, logits, mask, pos, cache)
        if self.running:
            state = _merge(self._state, state)
        self.running, self._state = self.running + joining, state

    def _advance(self, requests, logits, mask, pos, cache) -> tuple:
        tokens = logits.argmax(-1)  # (b,)
        for i, r in enumerate(requests):
            if r.params.temperature > 0:
                tokens[i] = _pick(logits[i : i + 1], r.params, r.generator)[0]
        for r, token in zip(requests, tokens.tolist()):
            r.row.add(token, r.stop_ids, r.params)
        mask = torch.cat([mask, mask.new_ones(len(requests), 1)], dim=1)
        return tokens[:, None], mask, pos[:, -1:] + 1, cache

    def _keep(self, keep: list[bool]) -> None:
        if all(keep):
            return
        self.running = [r for r, k in zip(self.running, keep) if k]
        if not self.running:
            self._state = None
            return
        ids, mask, pos, cache = self._state
        index = torch.tensor([i for i, k in enumerate(keep) if k], device=self.engine.device)
        cache.batch_select_indices(index)
        ids, mask, pos = ids[index], mask[index], pos[index]
        # Columns that are padding for every remaining row cost compute on each step: cut them.
        dead = int((mask.sum(0) == 0).long().cumprod(0).sum())
        if dead and _mergeable(cache):
            mask = mask[:, dead:]
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys[..., dead:, :], layer.values[..., dead:, :]
        self._state = (ids, mask, pos, cache)

    def _adapters(self, requests: list[Request]) -> list[str] | None:
        if not hasattr(self.engine.model, "peft_config"):
            return None
        return [r.adapter or "__base__" for r in requests]


def _mergeable(cache) -> bool:
    from transformers.cache_utils import DynamicLayer

    from onthejob.serve.cache import GrowingLayer

    return all(type(layer) in (DynamicLayer, GrowingLayer) and layer.is_initialized for layer in cache.layers)


def _merge(a: tuple, b: tuple) -> tuple:
    """Stack two batch states along rows, left-padding the shorter past with masked zeros."""
    (ids_a, mask_a, pos_a, cache_a), (ids_b, mask_b, pos_b, cache_b) = a, b
    width = max(mask_a.shape[1], mask_b.shape[1])

    def pad(t: torch.Tensor, dim: int) -> torch.Tensor:  # left-pad dimension ``dim`` to width
        missing = width - t.shape[dim]
        if missing == 0:
            return t
        shape = list(t.shape)
        shape[dim] = missing
        return torch.cat([t.new_zeros(shape), t], dim=dim)

    for la, lb in zip(cache_a.layers, cache_b.layers):  # keys/values: (b, heads, past, dim)
        la.keys = torch.cat([_pad_past(la.keys, width - 1), _pad_past(lb.keys, width - 1)])
        la.values = torch.cat([_pad_past(la.values, width - 1), _pad_past(lb.values, width - 1)])
    mask = torch.cat([pad(mask_a, 1), pad(mask_b, 1)])
    return torch.cat([ids_a, ids_b]), mask, torch.cat([pos_a, pos_b]), cache_a


def _pad_past(t: torch.Tensor, past: int) -> torch.Tensor:
    """Left-pad a (b, heads, T, dim) cache tensor with zeros to ``past`` positions."""
    missing = past - t.shape[-2]
    if missing <= 0:
        return t
    return torch.cat([t.new_zeros(*t.shape[:-2], missing, t.shape[-1]), t], dim=-2)


# --- token choice -------------------------------------------------------------------------------


def _pick(logits: torch.Tensor, params: SamplingParams, generator) -> torch.Tensor:
    """Next token per row from (b, V) logits: argmax at temperature 0, else top-p sampling."""
    if params.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)  # (b, V)
    if params.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the tokens ranked above it already hold top_p of the mass; the most
        # likely token always survives.
        sorted_probs[(sorted_probs.cumsum(-1) - sorted_probs) > params.top_p] = 0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# --- per-row state ------------------------------------------------------------------------------


class _Detokenizer:
    """Turns a growing list of ids into text deltas without splitting a multi-byte character.

    Each step decodes a short window (from the previous delta's first token) instead of all the
    text, and holds a delta back while it ends in U+FFFD, the mark of an incomplete UTF-8 byte
    sequence (the method of TGI and vLLM). Starting the window a few tokens back keeps tokenizers
    that drop a word's leading space at the start of a decode (SentencePiece) correct.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # window start
        self.read = 0  # ids before this are already in the text

    def push(self, token: int) -> str:
        self.ids.append(token)
        return self._delta(final=False)

    def flush(self) -> str:
        """Whatever is held back, even an incomplete character (generation has ended)."""
        return self._delta(final=True)

    def _delta(self, final: bool) -> str:
        before = self._decode(self.ids[self.prefix : self.read])
        now = self._decode(self.ids[self.prefix :])
        if len(now) > len(before) and (final or not now.endswith("\ufffd")):
            self.prefix, self.read = self.read, len(self.ids)
            return now[len(before) :]
        return ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if ids else ""


@dataclass
class _Row:
    index: int  # position in the caller's list
    prompt_tokens: int
    detok: _Detokenizer
    started: float
    text: str = ""  # decoded so far; cut before a stop string once one appears
    sent: int = 0  # characters of text already streamed
    generated: int = 0
    finish: FinishReason | None = None
    seconds: float = 0.0

    def add(self, token: int, stop_ids: set[int], params: SamplingParams) -> None:
        self.generated += 1
        # The end-of-turn token is neither text nor in token_ids (unless eos is ignored).
        if token in stop_ids and not params.ignore_eos:
            self._end("stop", self.detok.flush())
            return
        delta = self.detok.push(token)
        at_limit = self.generated >= params.max_new_tokens
        if at_limit:
            delta += self.detok.flush()
        if delta and params.stop:
            # Search only where a stop string could newly appear: it may straddle the old end.
            start = max(0, len(self.text) - max(map(len, params.stop)) + 1)
            self.text += delta
            hits = [i for i in (self.text.find(s, start) for s in params.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self._end("stop", "")
                return
        else:
            self.text += delta
        if at_limit:
            self._end("length", "")

    def _end(self, reason: FinishReason, tail: str) -> None:
        self.text += tail
        self.finish = reason
        self.seconds = time.perf_counter() - self.started

    def ready(self, stops: list[str]) -> str:
        """Text not yet streamed, minus a tail that may be the start of a stop string."""
        end = len(self.text)
        if self.finish is None:
            end -= _stop_prefix_len(self.text, stops)
        delta, self.sent = self.text[self.sent : end], max(self.sent, end)
        return delta

    def completion(self) -> Completion:
        return Completion(
            text=self.text, token_ids=list(self.detok.ids), finish_reason=self.finish or "length",
            prompt_tokens=self.prompt_tokens, completion_tokens=self.generated, seconds=self.seconds,
        )


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop string."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:k]):
                best = k
                break
    return best


# --- model plumbing -----------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode (no dropout) while generating; a model in training goes back to training."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _new_cache(model, reserve: int = 0):
    from onthejob.serve.cache import new_cache

    return new_cache(model, reserve)


def _forward_kwargs(model) -> dict[str, Any]:
    """Keyword names the model's forward takes: transformers 5.x renamed past_key_values to
    cache; logits_to_keep=1 saves a (B, T, V) logits tensor at prefill where supported."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = inspect.signature(base.forward).parameters
    return {
        "cache": "cache" if "cache" in names else "past_key_values",
        "extra": {"logits_to_keep": 1} if "logits_to_keep" in names else {},
    }


def _config_eos(model) -> set[int]:
    """The model's own eos ids (generation_config), which HF generate also stops on."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return set()
    return {eos} if isinstance(eos, int) else set(eos)


def _first_not_none(*values):
    return next(v for v in values if v is not None)
