from pathlib import Path

from onthejob.docs import cli_reference, config_reference

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_cli_reference_is_current():
    assert (DOCS / "cli.md").read_text() == cli_reference(), "run `make docs` and commit docs/cli.md"


def test_config_reference_is_current():
    assert (DOCS / "config.md").read_text() == config_reference(), "run `make docs` and commit docs/config.md"
