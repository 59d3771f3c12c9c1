"""Generation: the one engine (``engine.py``: prefill, step, generate, stream) that chat, batch
generation, eval, RAG answers and the server all call; its rows (``request.py``), the decode
loop that batches them (``batch.py``), sampling (``sampling.py``), the key/value cache
(``cache.py``), CPU decode kernels (``skinny.py``), interactive chat (``chat.py``), batch
generation over a file (``files.py``) and the two stages' configs (``config.py``).

Nothing is imported here: a config or sampling settings can be read without loading the engine
(and transformers with it), so ``ojt --help`` stays quick."""
