"""The ``ojt data synth`` and ``ojt data augment`` commands.

    ojt data synth handbook.pdf --out train.jsonl --eval-out eval.jsonl --style "formal, brief"
    ojt data synth docs/ --out train.jsonl --teacher-url http://127.0.0.1:8000/v1
    ojt data augment train.jsonl --paraphrases 4 --out aug.jsonl
"""

from __future__ import annotations

import argparse

from onthejob.config import add_config_file, add_options, config_file, load, overrides
from onthejob.errors import ConfigError
from onthejob.synth.config import AugmentConfig, SynthConfig

TEACHER_FLAGS = {"teacher.model": "--teacher-model", "teacher.url": "--teacher-url", "teacher.key_env": "--teacher-key-env",
                 "teacher.concurrency": "--concurrency", "teacher.max_new_tokens": "--max-new-tokens"}
METAVARS = {"teacher.model": "MODEL", "teacher.url": "URL", "teacher.key_env": "VAR", "out": "FILE", "eval_out": "FILE",
            "cache": "FILE"}


def _examples(pairs: list[str] | None) -> list[dict] | None:
    if not pairs:
        return None
    out = []
    for pair in pairs:
        q, sep, a = pair.partition("=>")
        if not sep or not q.strip() or not a.strip():
            raise ConfigError(f"--example {pair!r} is not 'QUESTION => ANSWER'",
                              fix="write e.g. --example 'How long is probation? => Probation lasts three months.'")
        out.append({"question": q.strip(), "answer": a.strip()})
    return out


def cmd_synth(args: argparse.Namespace) -> int:
    from onthejob.synth.run import run

    extra = overrides(args, {"paths": "paths"})
    examples = _examples(args.example)
    if examples:
        extra["examples"] = examples
    config = load(SynthConfig, config_file(args), extra)
    print(run(config))
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from onthejob.synth.augment import run

    config = load(AugmentConfig, config_file(args), overrides(args, {"file": "file"}))
    print(run(config))
    return 0


def register(data) -> None:
    """Add ``synth`` and ``augment`` to the subparsers of ``ojt data``."""
    p = data.add_parser("synth", help="write training and eval examples from documents with a teacher model, each tied to its source",
                        description="Ask a teacher model for question/answer pairs grounded in each passage of the documents; "
                                    "answers whose facts are not in the passage are dropped. Rerunning is free (replies are cached) "
                                    "and a killed run resumes where it stopped.")
    p.add_argument("paths", nargs="*", metavar="DOC", help="documents or folders (.txt .md .html .pdf .docx .csv .jsonl)")
    p.add_argument("--example", action="append", metavar="'Q => A'", help="a question/answer pair the teacher imitates (repeatable)")
    add_config_file(p, what="synth settings (SynthConfig keys)")
    add_options(p, SynthConfig, aliases={**TEACHER_FLAGS, "eval_out": "--eval-out", "eval_split": "--eval-split",
                                         "per_passage": "--per-passage"},
                skip=("paths", "examples"), metavars=METAVARS)
    p.set_defaults(func=cmd_synth, settings=True)

    p = data.add_parser("augment", help="add N rewordings of every user question (and optionally answer), each pointing to its original")
    p.add_argument("file", nargs="?", metavar="FILE", help="training examples (any format ojt reads)")
    add_config_file(p, what="augment settings (AugmentConfig keys)")
    add_options(p, AugmentConfig, aliases=TEACHER_FLAGS, skip=("file",), metavars=METAVARS)
    p.set_defaults(func=cmd_augment, settings=True)
