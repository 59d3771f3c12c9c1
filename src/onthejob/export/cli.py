"""The ``ojt export`` command.

    ojt export runs/hr-demo --to gguf --quant q8_0 --out export/hr
    ojt export runs/hr-demo --to ollama --out export/hr-ollama --no-check
"""

from __future__ import annotations

import argparse


def cmd_export(args: argparse.Namespace) -> int:
    from onthejob import config as cfg
    from onthejob.export.config import ExportConfig
    from onthejob.export.run import run

    extra = cfg.overrides(args, {"run": "run"})
    if args.no_check:
        extra["check"] = False
    run(cfg.load(ExportConfig, cfg.config_file(args), extra))
    return 0


def register(sub) -> argparse.ArgumentParser:
    """Add ``export`` to ``ojt``'s subcommands."""
    from onthejob import config as cfg
    from onthejob.export.config import ExportConfig

    p = sub.add_parser("export", help="export a run to GGUF, Ollama or merged safetensors, checked against the run",
                       description="Write a run as one GGUF file (llama.cpp), a GGUF plus Modelfile (Ollama) or a merged "
                                   "safetensors folder (transformers, vLLM), then answer the run's eval questions with the "
                                   "export and with the run side by side; an export that answers worse is not written.")
    p.add_argument("run", nargs="?", metavar="RUN", help="the run folder (or a model, exported as it is)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check (same as --check false)")
    cfg.add_config_file(p, what="export settings (ExportConfig keys)")
    cfg.add_options(p, ExportConfig, skip=("run",), aliases={"max_new_tokens": "--max-new-tokens"},
                    metavars={"out": "DIR", "data": "FILE", "to": "gguf|ollama|merged", "quant": "TYPE"})
    p.set_defaults(func=cmd_export, settings=True)
    return p
