"""Constrained decoding: answers that must parse, as JSON of a schema or as a tool call.

    grammar = json_grammar({"type": "object", "properties": {...}, "required": [...]})
    engine.generate_ids(prompts, params, grammars=[grammar] * len(prompts))

A ``Grammar`` is checked and compiled once (a bad schema is a ``GrammarError`` naming what to
fix); each row that decodes under it gets its own ``Constraint``, which masks the logits of every
step to the tokens that keep the text inside the grammar and lets the row end (its end-of-turn
tokens) only where the grammar is complete. The masks come from llguidance, chosen by
measurement (benchmarks/json_decoding.py on SmolLM2's 49k vocabulary: about 0.15 ms per token to
compute, apply and advance, as xgrammar, without xgrammar's triton and TVM dependencies;
lm-format-enforcer takes 30 to 50 times longer). JSON is written the way ``json.dumps`` writes it
(", " and ": ", no other whitespace), so a model cannot pad an answer with endless newlines.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from onthejob.errors import OjtError

JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
MAX_SCHEMA_CHARS = 100_000  # a schema is compiled per request: bound what one may cost


class GrammarError(OjtError):
    """A schema or grammar that cannot constrain decoding; the message says what to fix."""


@dataclass(frozen=True)
class Grammar:
    """A grammar in llguidance's form, checked; ``what`` names it in messages ("JSON schema 'x'")."""

    text: str
    what: str


def json_grammar(schema: dict[str, Any] | None, *, what: str = "the JSON schema") -> Grammar:
    """Any JSON object (``schema`` None), or JSON valid against ``schema``."""
    schema = {"type": "object"} if schema is None else check_schema(schema, what)
    return _checked(_ll().LLMatcher.grammar_from_json_schema(schema, defaults=JSON_STYLE), what)


def lark_grammar(lark: str, *, what: str) -> Grammar:
    """A grammar in llguidance's Lark dialect (``%json {schema}`` embeds a JSON schema)."""
    return _checked(_ll().LLMatcher.grammar_from_lark(lark), what)


def json_rule(schema: dict[str, Any]) -> str:
    """The Lark right-hand side for JSON valid against ``schema``, written as ``json.dumps`` does."""
    return "%json " + json.dumps({**schema, "x-guidance": JSON_STYLE}, ensure_ascii=False)


def check_schema(schema: Any, what: str) -> dict[str, Any]:
    """``schema`` if it is a JSON Schema (Draft 2020-12 rules), else a ``GrammarError``."""
    import jsonschema

    if not isinstance(schema, dict):
        raise GrammarError(f"{what} must be a JSON object, not {type(schema).__name__}", fix="give a JSON Schema object")
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise GrammarError(f"{what} is over {MAX_SCHEMA_CHARS} characters", fix="give a smaller schema")
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "top level"
        raise GrammarError(f"{what} is not a valid JSON Schema at {where}: {e.message}",
                           fix="correct the schema (https://json-schema.org)") from None
    return schema


def _checked(text: str, what: str) -> Grammar:
    error = _ll().LLMatcher.validate_grammar(text)
    if error:
        raise GrammarError(f"{what} cannot be used for constrained decoding: {error}",
                           fix="simplify the schema (supported: types, properties, required, enum, const, "
                               "items, anyOf/oneOf, $ref, string lengths and patterns, number ranges)")
    return Grammar(text, what)


class Constraint:
    """One row's place in its grammar: which next tokens are allowed, and taking the chosen one.

    ``stop_ids`` (the row's end-of-turn tokens) are allowed only where the grammar is complete."""

    def __init__(self, grammar: Grammar, tokenizer, stop_ids: set[int], vocab: int):
        ll = _ll()
        self.matcher = ll.LLMatcher(_ll_tokenizer(tokenizer, tuple(sorted(stop_ids)), vocab), grammar.text, log_level=0)
        if self.matcher.is_error():
            raise GrammarError(f"{grammar.what}: {self.matcher.get_error()}")
        self.stop_ids, self.vocab = stop_ids, vocab
        self.bits = torch.zeros((vocab + 31) // 32, dtype=torch.int32)  # one bit per token
        self._shifts = torch.arange(32, dtype=torch.int32)

    def allowed(self) -> torch.Tensor:
        """(V,) bool: the tokens that may come next."""
        self.matcher.unsafe_compute_mask_ptr(self.bits.data_ptr(), self.bits.numel() * 4)
        return ((self.bits[:, None] >> self._shifts) & 1).bool().flatten()[: self.vocab]

    def mask(self, logits: torch.Tensor) -> None:
        """Set the (V,) ``logits`` of every token the grammar forbids to -inf, in place."""
        allowed = self.allowed().to(logits.device)
        width = min(len(allowed), logits.shape[-1])
        logits[:width].masked_fill_(~allowed[:width], float("-inf"))
        logits[width:] = float("-inf")

    def take(self, token: int) -> None:
        if token not in self.stop_ids:
            self.matcher.consume_token(token)


_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _ll_tokenizer(tokenizer, stop_ids: tuple[int, ...], vocab: int):
    """llguidance's view of ``tokenizer`` (about a second to build; kept per tokenizer)."""
    per = _TOKENIZERS.setdefault(tokenizer, {})
    key = (stop_ids, vocab)
    if key not in per:
        from llguidance.hf import from_tokenizer

        try:
            per[key] = from_tokenizer(tokenizer, n_vocab=vocab, eos_token=list(stop_ids) or None)
        except ValueError as e:  # a slow (Python) tokenizer
            raise GrammarError(f"constrained decoding needs a fast tokenizer: {e}") from None
    return per[key]


def _ll():
    try:
        import llguidance
    except ImportError:
        raise GrammarError("constrained decoding needs the llguidance package, which is not installed",
                           fix="pip install llguidance (make setup installs it)") from None
    return llguidance
