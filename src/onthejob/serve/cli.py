"""The ``ojt serve`` command: load its config (a YAML file and/or flags) and call ``server.run``.

    ojt serve --adapter support=runs/support --api-key "$KEY" --port 8000
    ojt serve serve.yaml --port 8001
"""

from __future__ import annotations

import argparse
import os

ALIASES = {"adapters": "--adapter", "rag": "--rag", "adapter_dirs": "--adapter-dir"}
METAVARS = {"adapters": "NAME=RUN", "rag": "NAME=COLLECTION", "adapter_dirs": "DIR"}


def cmd_serve(args: argparse.Namespace) -> int:
    from onthejob import config as cfg
    from onthejob.serve.config import ServeConfig
    from onthejob.serve.server import run

    config = cfg.load(ServeConfig, cfg.config_file(args), cfg.overrides(args))
    if config.api_key is None and os.environ.get("ONTHEJOB_API_KEY"):
        config.api_key = os.environ["ONTHEJOB_API_KEY"]
    return run(config)


def register(sub) -> argparse.ArgumentParser:
    """Add ``serve`` to ``ojt``'s subcommands (``sub`` is argparse's subparsers object)."""
    from onthejob import config as cfg
    from onthejob.serve.config import ServeConfig

    p = sub.add_parser("serve", help="serve the base model and its adapters over an OpenAI-compatible HTTP API",
                       description="Serve a base model and LoRA adapters trained on it (OpenAI-compatible API, /v1). "
                                   "Every setting can come from a YAML file (CONFIG) and be overridden by its flag.")
    cfg.add_config_file(p, positional=True, what="serve settings (docs/config.md)")
    cfg.add_options(p, ServeConfig, aliases=ALIASES, metavars=METAVARS)
    p.set_defaults(func=cmd_serve, settings=True)
    return p
