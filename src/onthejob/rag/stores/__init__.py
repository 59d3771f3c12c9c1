"""Opening a store by URL; importing this package registers the built-in backends.

    from onthejob.rag.stores import open_store
    with open_store("sqlite:////abs/path/rag.sqlite3") as store:   # or open_store() for paths.home()/rag
        print(store.list())

The registry itself (``STORES``, ``@register_store``) lives in ``onthejob.rag.store``, which the
backends import; only this package imports the backends, so nothing imports its way back here.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from onthejob import paths
from onthejob.errors import RagError
from onthejob.rag.store import SCHEMES, STORES, Store
from onthejob.rag.stores import postgres, sqlite  # noqa: F401  (they register themselves)


def default_url() -> str:
    return f"sqlite:///{Path(paths.home()) / 'rag' / 'rag.sqlite3'}"


def open_store(url: str | None = None) -> Store:
    """Open the store at ``url``: None for the default embedded one, ``sqlite:///path/file.sqlite3``
    (an absolute path keeps its leading slash: ``sqlite:////abs/file.sqlite3``; ``sqlite:///~/x``
    works too) or a libpq URL ``postgresql://user@host/db`` (``?host=/socket/dir`` for a socket).
    Use it as ``with open_store(url) as store:``, which closes the store at the end."""
    url = url or default_url()
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(SCHEMES))
        raise RagError(f"unknown store URL {url!r}", fix=f"use one of {known}, or leave it out for the default")
    return STORES[SCHEMES[scheme]](url)
