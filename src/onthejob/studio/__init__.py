"""onthejob studio: the whole job in a browser, on the same library functions the CLI calls.

    ojt studio --workspace studio        # http://127.0.0.1:8765

``app.py`` is the web app (FastAPI, pages in ``static/``), ``workspace.py`` the files it keeps,
``jobs.py`` the training, compare, index and serve processes it starts (``worker.py`` runs each
one), ``routes_*.py`` the API behind each page.
"""
