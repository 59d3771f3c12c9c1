"""Export a run for the runtimes people deploy with (GGUF for llama.cpp, Ollama, merged weights),
and prove the exported artefact answers like the run (``parity.py``)."""
