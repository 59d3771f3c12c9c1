"""The one generation engine: chat, batch generation, eval, RAG and the server all call it.

    from onthejob.models.adapters import load_for_inference
    from onthejob.generate.engine import Engine
    from onthejob.generate.sampling import SamplingParams
    loaded = load_for_inference("runs/support")
    engine = Engine(loaded.model, loaded.tokenizer)
    [c] = engine.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_new_tokens=64))

Why our own loop rather than ``model.generate``: a row that finishes leaves the batch at once
(``generate`` keeps computing finished rows until the longest one ends), stop strings trim the
text, and streaming, batching and seeding behave the same for a plain model and a PEFT model.
It is also faster on a CPU: the key/value cache is filled in place instead of copied every step
(generate/cache.py) and decode steps' linears use the kernels that stream weights fastest
(generate/skinny.py). Greedy output equals ``model.generate(do_sample=False)`` token for token
(tests/generate).

Two layers. ``prefill`` and ``step`` are the decode mechanism: prefill runs the prompts of some
``Request`` rows (packed without padding, reusing beginnings computed before: generate/prefill.py;
left-padded for models that cannot) and picks each row's first token; step extends
every running row by one token with one (b, 1) forward. ``Batch`` (generate/batch.py) keeps the
running rows and calls them; the server's continuous batching is a ``Batch`` too. ``generate``,
``generate_ids`` and ``stream`` are the convenient front: they fill a ``Batch`` and step it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from onthejob.data.template import end_of_turn_ids, tokenize_prompt
from onthejob.errors import ConfigError
from onthejob.generate.batch import Batch, stream_request
from onthejob.generate.cache import DecodeState, GrowingLayer, new_cache
from onthejob.generate.constrain import Constraint, Grammar
from onthejob.generate.prefill import cache_key, packed_prefill, warm
from onthejob.generate.prefix import PrefixCache, shared_lengths
from onthejob.generate.request import BASE, Completion, Request
from onthejob.generate.sampling import SamplingParams
from onthejob.generate.skinny import Skinny


PREFIX_CACHE = 1 << 30  # bytes of prompt keys and values kept for reuse (generate/prefix.py)


def load_engine(name):
    """(engine, loaded) for any model name a user gives: our ``Engine`` over ``load_for_inference``,
    or llama.cpp for an exported GGUF file (generate/llamacpp.py), with the same calls."""
    from onthejob.models.adapters import load_for_inference
    from onthejob.models.exported import is_gguf

    if is_gguf(name):
        from onthejob.generate.llamacpp import gguf_engine

        return gguf_engine(name)
    loaded = load_for_inference(name)
    return Engine(loaded.model, loaded.tokenizer), loaded


class Engine:
    """Generates with a causal LM (plain or PEFT) and its tokenizer; see the module docstring.

    dtype: "float32" runs as the weights are; "bfloat16" runs under bf16 autocast; "auto" uses
    bf16 autocast on a GPU that supports it and plain float32 elsewhere (CPU bf16 is slower).
    """

    def __init__(self, model, tokenizer, *, dtype: str = "auto", prefix_cache: int = PREFIX_CACHE):
        if dtype not in ("float32", "bfloat16", "auto"):
            raise ConfigError(f"dtype: {dtype!r} (use float32, bfloat16 or auto)")
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.autocast = dtype == "bfloat16" or (
            dtype == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        )
        self.pad_id = _first_not_none(tokenizer.pad_token_id, tokenizer.eos_token_id, 0)
        self.stop_ids = self.stop_ids_for(tokenizer)
        self.vocab = model.get_output_embeddings().weight.shape[0]  # logits per step
        self._forward_kwargs = _forward_kwargs(model)
        # Decode steps' linears on a CPU: float32 as W @ x.T, bf16 on prepacked weights (generate/skinny.py)
        self._skinny = Skinny(model) if self.device.type == "cpu" and not self.autocast else contextlib.nullcontext
        # Prompts prefilled packed, without padding, reusing known beginnings (generate/prefill.py)
        self.packed = packable(model, self._forward_kwargs)
        self.prefix = PrefixCache(prefix_cache if self.packed else 0)
        self.adapter_off = False  # a batch of BASE rows is running with the adapter switched off

    # --- the front: whole answers, or one streamed --------------------------------------------

    def generate(
        self,
        conversations: Sequence[list[dict[str, Any]]],
        params: SamplingParams | None = None,
        *,
        tools: list[dict] | None = None,
        batch_size: int | None = None,
        adapters: Sequence[str | None] | None = None,
        grammars: Sequence[Grammar | None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Completion]:
        """One completion per conversation, in input order (each ends with the assistant reply)."""
        prompts = [tokenize_prompt(c, self.tokenizer, tools=tools) for c in conversations]
        return self.generate_ids(prompts, params, batch_size=batch_size, adapters=adapters, grammars=grammars,
                                 progress=progress)

    def generate_ids(
        self,
        prompt_ids: Sequence[list[int]],
        params: SamplingParams | None = None,
        *,
        batch_size: int | None = None,
        adapters: Sequence[str | None] | None = None,
        grammars: Sequence[Grammar | None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Completion]:
        """Complete raw token prompts, ``batch_size`` rows at a time (None = all at once).

        ``adapters``: per prompt, the PEFT adapter its row runs with (``BASE``: none; None: the
        model as loaded), so a base model's and its adapter's questions share every batch.
        ``grammars``: per prompt, the grammar its answer must follow (generate/constrain.py), or None.
        ``progress(n)`` is called as n more rows finish (``tqdm.update`` fits)."""
        params = params or SamplingParams()
        adapters = adapters if adapters is not None else [None] * len(prompt_ids)
        grammars = grammars if grammars is not None else [None] * len(prompt_ids)
        requests = [self.request(p, params, adapter=a, grammar=g)
                    for p, a, g in zip(prompt_ids, adapters, grammars, strict=True)]
        for r, shared in zip(requests, shared_lengths(prompt_ids)):
            r.share = shared  # what of each prompt another one also begins with: all the prefix cache keeps
        # Longest first: rows of similar length share a batch (less padding), and a batch too big
        # for memory fails at the start rather than after an hour. A new batch starts when the
        # last one is done, so each batch is prefilled once and never merged into; and it starts
        # early when the next prompt is under half the batch's longest, because every decode step
        # reads the cache of each row at the longest row's width (short rows beside 1,500-token
        # RAG prompts would cost as much as RAG rows).
        rows = batch_size or max(1, len(requests))
        # the rows of one adapter together: a batch of base rows runs with the adapter off, one of
        # the adapter's rows as loaded, neither through PEFT's slower per-row split
        order = sorted(requests, key=lambda r: (str(r.adapter), -r.prompt_tokens))
        for group in _similar_lengths(order, rows):
            batch = Batch(self, max_rows=rows, refill=False)
            for r in group:
                batch.add(r)
            with self._without_adapter(group):
                while batch.running or batch.waiting:
                    done = sum(1 for r in batch.step() if r.finish)
                    if progress and done:
                        progress(done)
        return [r.completion() for r in requests]

    @contextlib.contextmanager
    def _without_adapter(self, rows: list[Request]) -> Iterator[None]:
        """A batch whose rows are all ``BASE`` runs with the PEFT adapter switched off, once for
        the batch: PEFT's per-row split gathers and scatters at every LoRA layer (the prompting
        arm took 92 s through it against 64 s on the plain base model), and switching the
        adapter off and on walks every module (doing it per forward took 113 s)."""
        if not hasattr(self.model, "peft_config") or any(r.adapter != BASE for r in rows):
            yield
            return
        with self.model.disable_adapter():
            self.adapter_off = True
            try:
                yield
            finally:
                self.adapter_off = False

    def stream(
        self, conversation: list[dict[str, Any]], params: SamplingParams | None = None, *, tools=None,
        grammar: Grammar | None = None,
    ) -> Iterator[str]:
        """Yield the reply as text deltas; their concatenation equals ``generate``'s text.

        Text that could be the start of a stop string is held back until it is known not to be.
        Inference mode is entered per step, never held across a yield: it is thread state, and the
        caller's code runs between yields (a stream consumer printing, a trainer evaluating)."""
        request = self.request(tokenize_prompt(conversation, self.tokenizer, tools=tools), params or SamplingParams(),
                               grammar=grammar)
        return stream_request(self.new_batch(1), request)

    def new_batch(self, max_rows: int) -> Batch:
        """An empty ``Batch`` of up to ``max_rows`` rows on this engine (the server's is one)."""
        return Batch(self, max_rows=max_rows)

    # --- the mechanism: rows, prefill and step ------------------------------------------------

    def request(self, prompt: list[int], params: SamplingParams, *, tokenizer=None, adapter: str | None = None,
                grammar: Grammar | None = None) -> Request:
        """A row to decode. ``tokenizer``: another chat template's (an adapter's own), whose
        end-of-turn ids stop the row; ``adapter``: see ``Request``; ``grammar``: what its text
        must follow (generate/constrain.py)."""
        tokenizer = tokenizer or self.tokenizer
        stop_ids = self.stop_ids if tokenizer is self.tokenizer else self.stop_ids_for(tokenizer)
        constraint = None if grammar is None else Constraint(grammar, tokenizer, stop_ids, self.vocab)
        return Request(prompt, params, tokenizer=tokenizer, stop_ids=stop_ids, adapter=adapter,
                       device=self.device, constraint=constraint)

    def prefill(self, requests: list[Request]) -> DecodeState:
        """Run the prompts of ``requests`` together and give each row its first token: packed
        without padding where the model allows (generate/prefill.py), else left-padded."""
        with _eval_mode(self.model), torch.inference_mode():
            if self.packed:
                return packed_prefill(self, requests)
            ids, mask = self._left_pad([r.prompt for r in requests])  # (B, T) each
            # Positions count real tokens only, so a left-padded row sees the positions it would
            # see alone (HF generate does the same). Pad positions are never attended.
            pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
            cache = new_cache(self.model, max(r.params.max_new_tokens for r in requests))
            logits = self._forward(ids, mask, pos, cache, self._adapter_names(requests))
            return self._advance(requests, logits, mask, pos, cache)

    def step(self, requests: list[Request], state: DecodeState) -> DecodeState:
        """One more token for every row of ``state`` (``requests`` are its rows, in order)."""
        with _eval_mode(self.model), torch.inference_mode():
            logits = self._forward(state.ids, state.mask, state.pos, state.cache, self._adapter_names(requests))
            return self._advance(requests, logits, state.mask, state.pos, state.cache)

    def warm(self, request: Request, tokens: int) -> None:
        """Prefill the next ``tokens`` of ``request``'s prompt now and keep them on it (a long
        prompt joining a running batch in parts; generate/batch.py)."""
        if self.packed:
            with _eval_mode(self.model), torch.inference_mode():
                warm(self, request, tokens)

    def lookup(self, request: Request):
        """The longest known beginning of ``request``'s prompt: (tokens, keys and values per layer)."""
        if not self.prefix.budget:
            return 0, None
        return self.prefix.lookup(cache_key(self, request.adapter), request.prompt)

    def remember(self, request: Request, kv) -> None:
        """Keep the keys and values of ``request``'s prompt for prompts that begin the same way
        (only the part another known prompt shares, when all are known: ``generate_ids``)."""
        if not self.prefix.budget:
            return
        share = getattr(request, "share", None)
        keep = len(request.prompt) if share is None else min(share, len(request.prompt) - 1)
        self.prefix.insert(cache_key(self, request.adapter), request.prompt[:keep], kv)

    def stop_ids_for(self, tokenizer) -> set[int]:
        """End-of-turn ids of a tokenizer's chat template on this model (and the model's own eos)."""
        return set(end_of_turn_ids(tokenizer)) | _config_eos(self.model)

    def _advance(self, requests: list[Request], logits: torch.Tensor, mask, pos, cache) -> DecodeState:
        """Pick each row's next token from (b, V) ``logits`` and hand it to its request."""
        for i, r in enumerate(requests):
            if r.constraint is not None:
                r.constraint.mask(logits[i])
        tokens = logits.argmax(-1)  # (b,)
        for i, r in enumerate(requests):
            if r.params.temperature > 0:
                tokens[i] = pick(logits[i : i + 1], r.params, r.generator)[0]
        for r, token in zip(requests, tokens.tolist()):
            r.add(token)
        mask = torch.cat([mask, mask.new_ones(len(requests), 1)], dim=1)  # (b, past + 1)
        return DecodeState(tokens[:, None], mask, pos[:, -1:] + 1, cache)

    def _forward(self, ids, mask, pos, cache, adapter_names: list[str] | None) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)
        # PEFT LoRA takes one adapter name per row (BASE = none): mixed-adapter batches; none
        # needed while a batch of BASE rows runs with the adapter off
        per_row = {"adapter_names": adapter_names} if adapter_names is not None and not self.adapter_off else {}
        with autocast, self._skinny():
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                **{self._forward_kwargs["cache"]: cache}, **self._forward_kwargs["extra"], **per_row,
            )
        return out.logits[:, -1, :].float()  # (b, V): only the last position predicts

    def _adapter_names(self, requests: list[Request]) -> list[str] | None:
        """Per-row adapter names for a PEFT model serving several, else None (the model as loaded)."""
        if not hasattr(self.model, "peft_config") or all(r.adapter is None for r in requests):
            return None
        names = [r.adapter or BASE for r in requests]
        active = self.model.active_adapter
        if all(n == active for n in names):  # one adapter, the loaded one: no per-row split
            return None
        return names

    def _left_pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        return ids.to(self.device), mask.to(self.device)


def _similar_lengths(requests: list[Request], rows: int) -> list[list[Request]]:
    """Longest-first ``requests`` cut into batches of at most ``rows``, a new one also where a
    prompt is under half as long as its batch's first or runs with another adapter."""
    groups: list[list[Request]] = []
    for r in requests:
        first = groups[-1][0] if groups else None
        if (first is None or len(groups[-1]) == rows or r.prompt_tokens * 2 < first.prompt_tokens
                or r.adapter != first.adapter):
            groups.append([])
        groups[-1].append(r)
    return groups


# --- token choice -------------------------------------------------------------------------------


def pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
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


# --- model plumbing -----------------------------------------------------------------------------


def packable(model, forward_kwargs: dict) -> bool:
    """Can prompts be prefilled packed? The model's attention must go through transformers'
    attention interface with SDPA (switched to ours, which runs SDPA unless told
    otherwise: train/attention.py), keep every layer's full past (no sliding window), and its
    forward must pick the positions to compute logits for."""
    from onthejob.train.attention import NAME, use_packed_attention

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or "logits_to_keep" not in forward_kwargs["extra"]:
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    attentions = [m for m in base.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "layer_idx")]
    if len(attentions) != getattr(config, "num_hidden_layers", -1):
        return False
    if not all(type(layer) is GrowingLayer for layer in new_cache(base).layers):
        return False
    return use_packed_attention(config)


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode (no dropout) while generating; a model in training goes back to training."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


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
