"""The ``ojt studio`` command: load its config (flags, or a YAML file) and serve the web app.

    ojt studio --workspace studio --port 8765
    ojt studio --host 0.0.0.0 --api-key "$TOKEN"      # other machines: only with a token
"""

from __future__ import annotations

import argparse
import os


def cmd_studio(args: argparse.Namespace) -> int:
    from onthejob import config as cfg
    from onthejob.studio.app import run
    from onthejob.studio.config import StudioConfig

    overrides = cfg.overrides(args)
    if not overrides.get("api_key") and os.environ.get("ONTHEJOB_API_KEY"):
        overrides["api_key"] = os.environ["ONTHEJOB_API_KEY"]
    return run(cfg.load(StudioConfig, cfg.config_file(args), overrides))


def register(sub) -> argparse.ArgumentParser:
    """Add ``studio`` to ``ojt``'s subcommands (``sub`` is argparse's subparsers object)."""
    from onthejob import config as cfg
    from onthejob.studio.config import StudioConfig

    p = sub.add_parser("studio", help="the whole job in a browser: data, training, compare, review, documents, serving",
                       description="Serve onthejob studio, a web app over a workspace folder (loopback only unless a token is set).")
    cfg.add_config_file(p, positional=True, what="studio settings (docs/config.md)")
    cfg.add_options(p, StudioConfig)
    p.set_defaults(func=cmd_studio, settings=True)
    return p
