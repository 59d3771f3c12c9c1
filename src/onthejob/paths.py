"""Where onthejob keeps things: ``$ONTHEJOB_HOME``, else ``$XDG_CACHE_HOME/onthejob``, else
``~/.cache/onthejob``."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    explicit = os.environ.get("ONTHEJOB_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "onthejob"


def models_dir() -> Path:
    return home() / "models"
