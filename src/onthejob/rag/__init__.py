"""Retrieval-augmented generation: collections of chunked documents, searched by meaning and by words."""
