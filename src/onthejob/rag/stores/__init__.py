"""The built-in store backends; importing this package registers them in ``store.STORES``."""

from onthejob.rag.stores import postgres, sqlite  # noqa: F401
