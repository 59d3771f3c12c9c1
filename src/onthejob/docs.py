"""Generate the CLI and config references from the code, so they cannot drift.

    python -m onthejob.docs          (make docs) writes docs/cli.md and docs/config.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from onthejob import fsutil

ROOT = Path(__file__).resolve().parents[2]


def _walk(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                out += _walk(subparser, f"{name} {sub}")
    return out


def cli_reference() -> str:
    import os

    from onthejob.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; fix it so the file is stable
    parts = ["# CLI reference", "", "Generated from the code by `make docs`; a test fails when it is out of date.", ""]
    for name, parser in _walk(build_parser(), "ojt"):
        parts += [f"## `{name}`", "", "```", parser.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def config_reference() -> str:
    from onthejob.cli import stage_configs
    from onthejob.config import reference

    parts = [
        "# Config reference",
        "",
        "Every key of every stage's config, with its default. A config is a YAML file of these keys;",
        "any key can also be set on the command line as `--section.key VALUE` (flags win over the file),",
        "and unknown keys are errors. Generated from the code by `make docs`; a test fails when it is out of date.",
        "",
    ]
    for heading, given, model in stage_configs():
        parts += [f"## {heading}", "", f"Given as {given}.", "", *reference(model), ""]
    return "\n".join(parts)


def main() -> None:
    fsutil.write_text(ROOT / "docs" / "cli.md", cli_reference())
    fsutil.write_text(ROOT / "docs" / "config.md", config_reference())
    print("wrote docs/cli.md and docs/config.md")


if __name__ == "__main__":
    main()
