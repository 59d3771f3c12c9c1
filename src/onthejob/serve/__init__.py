"""``ojt serve``: the HTTP side only. An OpenAI-compatible app (``server.py``) over a scheduler
that batches every request into the one generation engine (``scheduler.py``, over
``onthejob.generate``), the API's shapes (``protocol.py``), ``/metrics`` (``metrics.py``), the
config (``config.py``), the command (``cli.py``) and a client for ``ojt chat --url``
(``client.py``)."""
