"""Constrained JSON decoding, measured: llguidance (what onthejob uses) against xgrammar and
lm-format-enforcer, then onthejob's engine with and without a grammar.

    python benchmarks/json_decoding.py                     # both parts, smollm2-135m-instruct
    python benchmarks/json_decoding.py --skip-e2e          # the mask costs only (seconds)
    python benchmarks/json_decoding.py --questions 16 --batch 8 --max-new-tokens 64

1. Mask cost per token, the three libraries side by side on the model's tokenizer. For three
   schemas (a flat object; the acceptance schema: a leave request with a nested object, an enum
   and a required array; one with anyOf and $ref) a valid instance is written as ``json.dumps``
   writes it (", " and ": "), tokenized, and walked token by token as decoding would: compute the
   next-token mask, apply it to a (1, V) float32 logits tensor, advance the matcher with the token;
   the last step is the end-of-turn token. The llguidance side is our own code path
   (``json_grammar`` and ``Constraint``, generate/constrain.py); xgrammar compiles with
   ``any_whitespace=False, separators=(", ", ": ")``; lm-format-enforcer's JSON parser allows
   any whitespace (it has no separator option) and masks with the token list it returns.
   Printed: tokenizer setup once per library; per schema the compile and new-row times, ms per
   token (mean and p95 over --repeats walks), the ratio to llguidance, whether every token of the
   valid text and its end were allowed, and whether an invalid text (a wrong enum value, a string
   for a number, a value matching no anyOf branch) was refused somewhere along it.
2. End to end through ``Engine.generate``: --questions leave requests answered greedily with
   --max-new-tokens, under the acceptance schema and without it, at batch 1 (the first
   --single-questions) and at --batch (all), group by group: each group's prompts alone
   (max_new_tokens=1: prefill), then unconstrained, then constrained, so that a shared machine's
   drift falls on both arms. Printed: how many answers parse and validate (jsonschema), wall
   seconds, generated tokens per second, decode ms per token (prefill's time taken out), the time
   spent inside ``Constraint`` (creation, masks, takes) per token, the same tokens masked again
   outside the engine, and the per-token overhead: constrained minus unconstrained decode ms per
   token. At batch > 1 that difference also carries how the two arms' answer lengths fill the
   batch; the time inside ``Constraint`` is the cleaner figure.

Not a test: the figures depend on the machine; run it on a quiet one. Sides run one after the
other, never together.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

FLAT = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": "string"},
                   "active": {"type": "boolean"}},
    "required": ["name", "age", "email", "active"],
    "additionalProperties": False,
}
LEAVE = {  # the acceptance schema: what part 2 decodes under
    "type": "object",
    "properties": {
        "employee": {"type": "object", "properties": {"name": {"type": "string"}, "team": {"type": "string"}},
                     "required": ["name", "team"], "additionalProperties": False},
        "kind": {"type": "string", "enum": ["annual", "sick", "parental"]},
        "days": {"type": "integer"},
        "dates": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["employee", "kind", "days", "dates"],
    "additionalProperties": False,
}
_PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
           "required": ["name", "email"], "additionalProperties": False}
REFS = {
    "$defs": {"person": _PERSON},
    "type": "object",
    "properties": {
        "requester": {"$ref": "#/$defs/person"},
        "approver": {"anyOf": [{"$ref": "#/$defs/person"}, {"type": "null"}]},
        "period": {"anyOf": [
            {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
             "required": ["from", "to"], "additionalProperties": False},
            {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"],
             "additionalProperties": False}]},
    },
    "required": ["requester", "approver", "period"],
    "additionalProperties": False,
}
# (schema, a valid instance, an invalid one), keys in schema order (llguidance and xgrammar keep it)
SCHEMAS = {
    "flat": (FLAT, {"name": "Ada Lovelace", "age": 36, "email": "ada@example.com", "active": True},
             {"name": "Ada Lovelace", "age": "thirty-six", "email": "ada@example.com", "active": True}),
    "leave (acceptance)": (
        LEAVE,
        {"employee": {"name": "Maria Rossi", "team": "Payroll"}, "kind": "annual", "days": 3,
         "dates": ["2025-07-14", "2025-07-15", "2025-07-16"]},
        {"employee": {"name": "Maria Rossi", "team": "Payroll"}, "kind": "holiday", "days": 3,
         "dates": ["2025-07-14", "2025-07-15", "2025-07-16"]}),
    "anyOf + $ref": (
        REFS,
        {"requester": {"name": "Sam Lee", "email": "sam@example.com"}, "approver": None,
         "period": {"from": "2025-08-01", "to": "2025-08-05"}},
        {"requester": {"name": "Sam Lee", "email": "sam@example.com"}, "approver": "Ann Dupont",
         "period": {"from": "2025-08-01", "to": "2025-08-05"}}),
}
NAMES = ["Maria Rossi", "Tom Becker", "Aisha Khan", "Li Wei", "Sara Novak", "Jonas Berg", "Priya Nair",
         "Diego Ruiz", "Emma Laurent", "Kofi Mensah"]
TEAMS = ["Payroll", "Support", "Sales", "Platform", "Legal", "Finance", "Research"]
KINDS = ["annual", "sick", "parental"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--single-questions", type=int, default=8, help="how many of them run at batch 1")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed walks of each valid text per library")
    parser.add_argument("--skip-e2e", action="store_true", help="measure the mask costs only")
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))

    import torch

    from onthejob.generate.engine import load_engine

    torch.set_num_threads(threads)
    print(f"machine: {os.cpu_count()} CPUs, {threads} usable, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    engine, _ = load_engine(args.model)
    print(f"model: {args.model}, vocabulary {engine.vocab}, end of turn {sorted(engine.stop_ids)}\n")
    masks(engine, args.repeats, threads)
    if not args.skip_e2e:
        end_to_end(engine, args)
    return 0


# --- part 1: mask cost per token ---------------------------------------------------------------

class Llguidance:
    """onthejob's own path: ``json_grammar`` once per schema, a ``Constraint`` per row."""

    name = "llguidance"

    def __init__(self, engine, threads: int):
        from onthejob.generate.constrain import Constraint, json_grammar

        self.engine, self.Constraint, self.json_grammar = engine, Constraint, json_grammar
        self.new(json_grammar(None))  # builds llguidance's view of the tokenizer, kept per tokenizer

    def compile(self, schema):
        return self.json_grammar(schema)

    def new(self, grammar):
        e = self.engine
        row = self.Constraint(grammar, e.tokenizer, stop_ids=e.stop_ids, vocab=e.vocab)
        return (lambda logits: row.mask(logits[0])), (lambda token: row.take(token) or True)


class Xgrammar:
    name = "xgrammar"

    def __init__(self, engine, threads: int):
        import xgrammar as xgr

        self.xgr, self.vocab = xgr, engine.vocab
        info = xgr.TokenizerInfo.from_huggingface(engine.tokenizer, vocab_size=engine.vocab,
                                                  stop_token_ids=sorted(engine.stop_ids))
        self.compiler = xgr.GrammarCompiler(info, max_threads=threads)

    def compile(self, schema):
        return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(", ", ": "))

    def new(self, compiled):
        xgr = self.xgr
        matcher, bits = xgr.GrammarMatcher(compiled), xgr.allocate_token_bitmask(1, self.vocab)  # (1, ceil(V/32))

        def mask(logits):
            matcher.fill_next_token_bitmask(bits)
            xgr.apply_token_bitmask_inplace(logits, bits)

        return mask, matcher.accept_token


class FormatEnforcer:
    name = "lm-format-enforcer"

    def __init__(self, engine, threads: int):
        import transformers
        import transformers.tokenization_utils as legacy

        # lm-format-enforcer 0.11 imports PreTrainedTokenizerBase from transformers.tokenization_utils,
        # which transformers 5 keeps only as an alias module without it: put the name back first.
        if not hasattr(legacy, "PreTrainedTokenizerBase"):
            legacy.PreTrainedTokenizerBase = transformers.PreTrainedTokenizerBase
        import lmformatenforcer
        from lmformatenforcer.integrations.transformers import build_token_enforcer_tokenizer_data

        self.lmfe, self.vocab = lmformatenforcer, engine.vocab
        self.data = build_token_enforcer_tokenizer_data(engine.tokenizer, vocab_size=engine.vocab)

    def compile(self, schema):
        return self.lmfe.JsonSchemaParser(schema)

    def new(self, parser):
        import torch

        enforcer, prefix = self.lmfe.TokenEnforcer(self.data, parser), []

        def mask(logits):  # the enforcer advances itself from the prefix it is given
            allowed = enforcer.get_allowed_tokens(prefix).allowed_tokens  # a list of token ids
            bias = torch.full_like(logits, -math.inf)
            bias[0, allowed] = 0
            logits.add_(bias)

        def take(token):
            prefix.append(token)
            return True

        return mask, take


def walk(side, compiled, ids: list[int], end: int, vocab: int) -> tuple[int, bool, list[float], float]:
    """Decode ``ids`` then ``end`` under one new row of ``side``: (tokens of ``ids`` allowed before
    the first refused one, whether ``end`` was allowed after all of them, seconds per step for mask +
    apply + advance, seconds to make the row)."""
    import torch

    start = time.perf_counter()
    mask, take = side.new(compiled)
    made = time.perf_counter() - start
    logits = torch.zeros(1, vocab)  # (1, V) float32
    steps = []
    for n, token in enumerate([*ids, end]):
        logits.zero_()
        t0 = time.perf_counter()
        mask(logits)
        t1 = time.perf_counter()
        allowed = logits[0, token].item() != -math.inf  # looked at outside the timed parts
        t2 = time.perf_counter()
        taken = allowed and take(token)
        steps.append(t1 - t0 + time.perf_counter() - t2)
        if not taken:
            return n, False, steps, made
    return len(ids), True, steps, made


def masks(engine, repeats: int, threads: int) -> None:
    tokenizer, end = engine.tokenizer, tokenizer_end(engine)
    texts = {name: (schema, tokenizer.encode(json.dumps(good), add_special_tokens=False),
                    tokenizer.encode(json.dumps(bad), add_special_tokens=False))
             for name, (schema, good, bad) in SCHEMAS.items()}
    sides, setup, rows = [], {}, []
    for cls in (Llguidance, Xgrammar, FormatEnforcer):
        start = time.perf_counter()
        sides.append(cls(engine, threads))
        setup[cls.name] = time.perf_counter() - start
    for name, (schema, good, bad) in texts.items():
        for side in sides:
            start = time.perf_counter()
            compiled = side.compile(schema)
            compiled_s = time.perf_counter() - start
            ok, end_ok, _, _ = walk(side, compiled, good, end, engine.vocab)  # also the warm-up
            steps, made = [], []
            for _ in range(repeats):
                _, _, s, m = walk(side, compiled, good, end, engine.vocab)
                steps += s
                made.append(m)
            bad_ok, bad_end, _, _ = walk(side, compiled, bad, end, engine.vocab)
            rows.append((name, side.name, len(good), compiled_s, statistics.mean(made), steps,
                         ok == len(good) and end_ok, not (bad_ok == len(bad) and bad_end), ok))
    print("| library | tokenizer setup s |\n|---|---|")
    for name, seconds in setup.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"\nmask + apply to (1, {engine.vocab}) float32 logits + advance, per token of the valid text "
          f"(and its end of turn), {repeats} walks each\n")
    print("| schema | library | tokens | compile ms | new row ms | ms/token mean | p95 | vs llguidance "
          "| accepts valid | rejects invalid |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ours = {r[0]: statistics.mean(r[5]) for r in rows if r[1] == Llguidance.name}
    for name, side, tokens, compiled_s, made, steps, accepts, rejects, ok in rows:
        mean, p95 = statistics.mean(steps), sorted(steps)[int(0.95 * (len(steps) - 1))]
        accepted = "yes" if accepts else "no (end refused)" if ok == tokens else f"no (token {ok + 1} refused)"
        print(f"| {name} | {side} | {tokens} | {compiled_s * 1e3:.1f} | {made * 1e3:.2f} | {mean * 1e3:.3f} "
              f"| {p95 * 1e3:.3f} | {mean / ours[name]:.1f}× | {accepted} | {'yes' if rejects else 'no'} |")


def tokenizer_end(engine) -> int:
    """The end-of-turn token every library knows: the tokenizer's eos where it is one (lm-format-
    enforcer allows only that one at the end), else the lowest end-of-turn id."""
    eos = engine.tokenizer.eos_token_id
    return eos if eos in engine.stop_ids else min(engine.stop_ids)


# --- part 2: end to end through the engine -------------------------------------------------------

def questions(n: int) -> list[list[dict]]:
    out = []
    for i in range(n):
        name, team, kind = NAMES[i % len(NAMES)], TEAMS[i % len(TEAMS)], KINDS[i % len(KINDS)]
        days, day = 1 + i % 5, 1 + i % 20
        out.append([{"role": "user", "content": (
            f"Write the leave request of employee number {i} as JSON with the keys employee (with name and "
            f"team), kind (annual, sick or parental), days and dates (a list of the dates off). {name} from "
            f"the {team} team asks for {days} days of {kind} leave starting on 2025-07-{day:02d}.")}])
    return out


def end_to_end(engine, args) -> None:
    from onthejob.generate import engine as engine_module
    from onthejob.generate.constrain import Constraint, json_grammar
    from onthejob.generate.sampling import SamplingParams

    class TimedConstraint(Constraint):
        """A Constraint adding up the seconds the engine spends in it: creation, masks and takes."""

        seconds = 0.0

        def __init__(self, *a, **k):
            start = time.perf_counter()
            super().__init__(*a, **k)
            TimedConstraint.seconds += time.perf_counter() - start

        def mask(self, logits):
            start = time.perf_counter()
            super().mask(logits)
            TimedConstraint.seconds += time.perf_counter() - start

        def take(self, token):
            start = time.perf_counter()
            super().take(token)
            TimedConstraint.seconds += time.perf_counter() - start

    # the engine makes each row's Constraint itself (Engine.request): count what it spends there
    engine_module.Constraint = TimedConstraint
    grammar = json_grammar(LEAVE)
    conversations = questions(args.questions)
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    engine.generate(conversations[:2], SamplingParams(max_new_tokens=4), grammars=[grammar] * 2)  # warm-up
    rows = []
    for batch, convs in ((1, conversations[: args.single_questions]), (args.batch, conversations)):
        # group by group, the prompts alone (prefill and the first token; it also fills the prefix
        # cache both arms then find), unconstrained, constrained: drift of a shared machine falls on both
        prefill, seconds = 0.0, {"unconstrained": 0.0, "constrained": 0.0}
        answers, inside = {"unconstrained": [], "constrained": []}, 0.0
        for start in range(0, len(convs), batch):
            group = convs[start:start + batch]
            prefill += timed(lambda: engine.generate(group, SamplingParams(max_new_tokens=1), batch_size=batch))[0]
            for arm, grammars in (("unconstrained", None), ("constrained", [grammar] * len(group))):
                TimedConstraint.seconds = 0.0
                spent, out = timed(lambda: engine.generate(group, params, batch_size=batch, grammars=grammars))
                seconds[arm] += spent
                answers[arm] += out
                inside += TimedConstraint.seconds
        for arm in seconds:
            alone = walked(engine, grammar, answers[arm]) if arm == "constrained" else None
            rows.append((batch, arm, len(convs), seconds[arm], prefill, inside if alone is not None else 0.0,
                         alone, answers[arm]))
    _print_e2e(rows, args.max_new_tokens)


def walked(engine, grammar, answers) -> float:
    """Seconds per token to mask and take the tokens of ``answers`` again, outside the engine."""
    import torch

    from onthejob.generate.constrain import Constraint

    logits, spent, tokens = torch.zeros(engine.vocab), 0.0, 0  # (V,) float32
    for a in answers:
        row = Constraint(grammar, engine.tokenizer, stop_ids=engine.stop_ids, vocab=engine.vocab)
        ended = [tokenizer_end(engine)] if a.finish_reason == "stop" else []
        for token in [*a.token_ids, *ended]:
            logits.zero_()
            start = time.perf_counter()
            row.mask(logits)
            row.take(token)
            spent += time.perf_counter() - start
            tokens += 1
    return spent / max(1, tokens)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def verdict(text: str) -> tuple[bool, bool, bool]:
    """(the text parses as JSON, a {...} block in it parses, that block validates against LEAVE)."""
    import jsonschema

    try:
        json.loads(text)
        whole = True
    except ValueError:
        whole = False
    try:
        value = json.loads(text[text.index("{"): text.rindex("}") + 1])
    except ValueError:
        return whole, False, False
    return whole, True, jsonschema.Draft202012Validator(LEAVE).is_valid(value)


def _print_e2e(rows, new_tokens: int) -> None:
    print(f"\nend to end: greedy, max_new_tokens {new_tokens}, the leave request schema\n")
    print("| batch | questions | arm | parse as is | JSON block found | validates | hit max_new_tokens | wall s "
          "| generated | tok/s | decode ms/token | in Constraint ms/token | same tokens alone ms/token |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    decode = {}
    for batch, arm, n, seconds, prefill, inside, alone, answers in rows:
        generated = sum(a.completion_tokens for a in answers)
        parsed = [verdict(a.text) for a in answers]
        per_token = (seconds - prefill) / max(1, generated - n)  # the first token of each row is prefill's
        decode[batch, arm] = per_token, inside / generated
        capped = sum(a.finish_reason == "length" for a in answers)
        print(f"| {batch} | {n} | {arm} | {sum(p[0] for p in parsed)} | {sum(p[1] for p in parsed)} "
              f"| {sum(p[2] for p in parsed)} | {capped} | {seconds:.1f} | {generated} | {generated / seconds:.1f} "
              f"| {per_token * 1e3:.2f} | {inside / generated * 1e3:.3f} "
              f"| {'' if alone is None else f'{alone * 1e3:.3f}'} |")
    print()
    for batch in dict.fromkeys(r[0] for r in rows):
        (free, _), (held, inside) = decode[batch, "unconstrained"], decode[batch, "constrained"]
        print(f"batch {batch}: overhead {(held - free) * 1e3:+.2f} ms per generated token "
              f"({(held / free - 1) * 100:+.0f}%), of which inside Constraint {inside * 1e3:.3f} ms")


if __name__ == "__main__":
    sys.exit(main())
