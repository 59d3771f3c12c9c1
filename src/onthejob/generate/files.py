"""Answer every conversation in a file with a model or a trained run, in batches.

    ojt generate runs/support --input questions.jsonl --out answers.jsonl --batch-size 8

The input is canonical chat JSONL (``{"messages": [...], "tools": [...]?, ...}``), one record per
line. Each record is written back with the generated assistant message appended, every other key
kept as it was (an eval file's ``facts`` or ``id`` survive), in input order. A record whose last
message is already an assistant message has that message dropped and generated anew, so a
training or eval file with reference answers can be regenerated as is. The output file appears
only when every record is done (written atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onthejob.errors import DataError
from onthejob.generate.engine import Engine, load_engine
from onthejob.generate.sampling import SamplingParams


def run(config) -> int:
    """``ojt generate``: answer ``config.input`` (a ``GenerateConfig``) into ``config.out``."""
    from onthejob.rag.answer import opened_retriever

    grammar = schema_grammar(config.json_schema) if config.json_schema else None
    with opened_retriever(config.rag) as rag:
        return run_generate(config.model, config.input, config.out, params=config.sampling,
                            batch_size=config.batch_size, rag=rag, grammar=grammar)


def schema_grammar(path: str):
    """The grammar of the JSON Schema in file ``path`` (--json-schema)."""
    from onthejob.data.files import loads
    from onthejob.generate.constrain import json_grammar

    try:
        schema = loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"--json-schema {path}: cannot read it ({e.strerror or e})", fix="give a JSON Schema file") from None
    except ValueError as e:
        raise DataError(f"--json-schema {path}: not JSON ({e})", fix="write the schema as a JSON object") from None
    return json_grammar(schema, what=f"--json-schema {path}")


def run_generate(
    model_name: str,
    input_path: str | Path,
    out_path: str | Path,
    *,
    params: SamplingParams | None = None,
    batch_size: int = 8,
    progress: bool = True,
    rag=None,  # an onthejob.rag.answer.Retriever: answer from its documents, with citations
    grammar=None,  # a generate/constrain.py Grammar every answer follows
) -> int:
    """Generate one answer per record of ``input_path`` into ``out_path``; returns the count."""
    from tqdm import tqdm

    from onthejob.data.template import tokenize_prompt
    from onthejob.fsutil import write_jsonl
    records, examples = _read(input_path)
    engine, loaded = load_engine(model_name)
    if grammar is not None and not isinstance(engine, Engine):
        raise DataError(f"--json-schema: {model_name} is a GGUF that llama.cpp answers; constrained decoding runs in "
                        "onthejob's engine", fix="generate with the run (or its merged model) instead")
    prompts = [_prompt_messages(ex.messages) for ex in examples]
    sources: list[list] = [[] for _ in prompts]
    if rag is not None:
        prepared = [rag.prepare(msgs) for msgs in prompts]
        prompts = [wrapped for wrapped, _ in prepared]  # None: the documents do not cover it
        sources = [found for _, found in prepared]
    todo = [i for i, msgs in enumerate(prompts) if msgs is not None]
    prompt_ids = [tokenize_prompt(prompts[i], loaded.tokenizer, tools=examples[i].tools) for i in todo]
    with tqdm(total=len(prompt_ids), desc="generate", unit="ex", disable=not progress) as bar:
        extra = {"grammars": [grammar] * len(prompt_ids)} if grammar is not None else {}
        completions = engine.generate_ids(
            prompt_ids, params or SamplingParams(), batch_size=batch_size, progress=bar.update, **extra
        )
    texts = {i: c.text for i, c in zip(todo, completions)}
    out = []
    for i, record in enumerate(records):
        record = dict(record)
        kept = _prompt_messages(record["messages"])  # the user's own message dicts, as written
        text = texts.get(i)
        if text is None:
            from onthejob.rag.answer import NOT_COVERED

            text = NOT_COVERED
        record["messages"] = [*kept, {"role": "assistant", "content": text}]
        if rag is not None:
            from onthejob.rag.answer import cited

            record["sources"] = cited(text, sources[i])
        out.append(record)
    return write_jsonl(out_path, out)


def _prompt_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation without a final assistant answer (which is regenerated)."""
    if messages and messages[-1].get("role") == "assistant":
        return messages[:-1]
    return messages


def _read(path: str | Path) -> tuple[list[dict[str, Any]], list]:
    """(raw records, canonical examples), aligned. Raw records keep every key for the output;
    the canonical examples (validated by the chat reader) build the prompts."""
    from onthejob.data.readers import read_examples

    result = read_examples(path, format="chat")
    if result.errors:
        shown = "\n".join(f"  {p}" for p in result.errors[:5])
        raise DataError(
            f"{path}: {len(result.errors)} error(s); nothing generated\n{shown}",
            fix=f"fix them (ojt data check {path} lists all) and run again",
        )
    if not result.examples:
        raise DataError(f"{path}: no conversations found", fix="give chat JSONL: {\"messages\": [...]}")
    raw = _raw_lines(Path(path))
    records = [raw.get(ex.line) or ex.to_record() for ex in result.examples]
    return records, result.examples


def _raw_lines(path: Path) -> dict[int, dict]:
    """1-based line -> JSON object, numbered as the reader numbers JSONL lines. A JSON array file
    yields nothing here, and its records are written in canonical form instead."""
    from onthejob.data.readers import jsonl_records

    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        return {}
    raw = {}
    for line, record in jsonl_records(text, str(path)):
        if not isinstance(record, dict):
            return {}  # not JSONL after all (one pretty-printed object)
        raw[line] = record
    return raw
