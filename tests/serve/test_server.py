"""``ojt serve`` end to end: a real server on a loopback port, a tiny model with two LoRA runs,
and the official ``openai`` client (raw HTTP where a client would not send such a request)."""

from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
import threading
import time

import openai
import pytest

from onthejob.data.template import tokenize_prompt
from onthejob.models.adapters import load_for_inference
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from onthejob.serve.config import ServeConfig
from onthejob.serve.server import create_app
from tests.serve.server_helpers import ServerThread, raw, served

KEY = "test-key"
HELLO = [{"role": "user", "content": "Hello! How can I help you today?"}]


@pytest.fixture(scope="module")
def server(world):
    config = ServeConfig(
        model=str(world["base"]), adapters={"alpha": str(world["alpha"]), "beta": str(world["beta"])},
        rag={"docs": "handbook"}, adapter_dirs=[world["runs"]], api_key=KEY,
        max_tokens=64, max_queue=8, max_request_bytes=20_000, feedback_db=None,
    )
    with served(config) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)


def _alone(folder, messages, max_new_tokens=12) -> str:
    loaded = load_for_inference(folder)
    [c] = Engine(loaded.model, loaded.tokenizer).generate([messages], SamplingParams(max_new_tokens=max_new_tokens))
    return c.text


def _chat(client, model, **kw):
    kw = {"messages": HELLO, "temperature": 0, "max_tokens": 12, **kw}
    return client.chat.completions.create(model=model, **kw)


# --- answers ------------------------------------------------------------------------------------


def test_models_lists_base_adapters_rag_and_embedder(client, world):
    cards = {m.id: m.model_dump() for m in client.models.list().data}
    assert set(cards) == {world["base"].name, "alpha", "beta", "docs", "all-minilm-l6-v2"}
    assert (cards["alpha"]["kind"], cards["alpha"]["base"]) == ("adapter", str(world["base"]))
    assert cards["alpha"]["source"] == str(world["alpha"] / "final")
    assert (cards["docs"]["kind"], cards["docs"]["source"]) == ("rag", "handbook")
    assert cards[world["base"].name]["kind"] == "base" and "base" not in cards[world["base"].name]


def test_adapters_batched_together_answer_as_each_alone_with_their_own_template(client, server, world):
    names = [world["base"].name, "alpha", "beta"]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:  # arrive together: shared forward passes
        answers = list(pool.map(lambda m: _chat(client, m), names * 2))
    texts = [a.choices[0].message.content for a in answers[:3]]
    assert [a.choices[0].message.content for a in answers[3:]] == texts
    assert len(set(texts)) == 3  # the same prompt, three different answers
    assert texts == [_alone(world["base"], HELLO), _alone(world["alpha"], HELLO), _alone(world["beta"], HELLO)]
    alpha_tok, beta_tok = (load_for_inference(world[n]).tokenizer for n in ("alpha", "beta"))
    assert answers[1].usage.prompt_tokens == len(tokenize_prompt(HELLO, alpha_tok))
    assert answers[2].usage.prompt_tokens == len(tokenize_prompt(HELLO, beta_tok)) != answers[1].usage.prompt_tokens


def test_stream_with_usage_equals_the_plain_answer(client):
    plain = _chat(client, "alpha", max_completion_tokens=20)
    chunks = list(_chat(client, "alpha", max_completion_tokens=20, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == plain.usage.model_dump()


def test_n_seed_and_stop(client):
    kw = dict(n=3, temperature=1.0, seed=11, max_tokens=10)
    first, again = (client.chat.completions.create(model="beta", messages=HELLO, **kw) for _ in range(2))
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices] and len(set(texts)) > 1
    full = _chat(client, "beta").choices[0].message.content
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = _chat(client, "beta", stop=[stop]).choices[0]
    assert cut.message.content == full[: full.index(stop)] and cut.finish_reason == "stop"


def test_completions_plain_and_streamed(client):
    done = client.completions.create(model="alpha", prompt="The answer is", max_tokens=5, temperature=0)
    assert done.choices[0].finish_reason == "length" and done.usage.completion_tokens == 5
    streamed = client.completions.create(model="alpha", prompt="The answer is", max_tokens=5, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == done.choices[0].text


@pytest.mark.skipif(os.environ.get("OJT_FAST") == "1", reason="loads MiniLM (a few seconds)")
def test_embeddings_from_minilm(client):
    out = client.embeddings.create(model="all-minilm-l6-v2", input=["the printer is broken", "my printer does not work", "Paris weather"])
    a, b, c = (d.embedding for d in out.data)
    assert len(a) == 384
    dot = lambda x, y: sum(p * q for p, q in zip(x, y))  # noqa: E731 - normalized: cosine
    assert dot(a, b) > dot(a, c)
    assert out.usage.prompt_tokens > 0


def test_client_disconnect_stops_generation_and_metrics_count(client, server):
    client.chat.completions.create(model="alpha", messages=HELLO, max_tokens=2)  # one counted 200
    sched = server.scheduler
    with sched._model_lock:  # no step runs until the client has gone
        stream = client.chat.completions.create(model="alpha", messages=HELLO, max_tokens=64, stream=True)
        next(iter(stream))  # the role chunk, sent before any token
        [job] = list(sched._jobs.values())
        stream.close()
        deadline = time.monotonic() + 5
        while sched._jobs:  # the server saw the disconnect and cancelled the rows
            assert time.monotonic() < deadline, "the disconnected request was not cancelled"
            time.sleep(0.02)
    time.sleep(0.1)
    assert sched.running == 0 and all(r.generated == 0 for r in job.requests)
    status, text = raw("GET", server.root + "/metrics")
    assert status == 200
    assert 'ojt_requests_total{endpoint="/v1/chat/completions",status="200"}' in text
    assert "ojt_queue_depth 0" in text and "ojt_time_to_first_token_seconds_count" in text
    assert int(text.split("\nojt_generation_tokens_total ")[1].split()[0]) > 0


def test_rag_model_answers_from_its_collection_through_the_scheduler(client, monkeypatch):
    from onthejob.rag import answer as rag_answer
    from onthejob.rag.store import Chunk, Hit

    asked = []

    def retrieve(collection, question, k, **_):
        asked.append((collection, question))
        return [Hit(Chunk("leave.md#0", "leave.md", "Staff get 25 days of annual leave."), 0.9, 0.9, None, 1)]

    monkeypatch.setattr(rag_answer, "retrieve", retrieve)
    out = _chat(client, "docs", messages=[{"role": "user", "content": "How many days of leave?"}])
    assert asked == [("handbook", "How many days of leave?")]
    assert out.choices[0].message.content and isinstance(out.model_extra["citations"], list)


def test_remote_chat_streams_from_the_server(server, client):
    from onthejob.generate.config import ChatConfig
    from onthejob.serve.client import run_remote_chat

    out = io.StringIO()
    config = ChatConfig(url=server.url, model="alpha", sampling=SamplingParams(max_new_tokens=12), api_key=KEY)
    run_remote_chat(config, input=io.StringIO(HELLO[0]["content"] + "\n/exit\n"), output=out)
    assert "chatting with alpha" in out.getvalue()
    assert _chat(client, "alpha").choices[0].message.content + "\n" in out.getvalue()


# --- errors -------------------------------------------------------------------------------------


def _error(status, body, code, param=None):
    """The status of an OpenAI-shaped error body whose code and param are the given ones."""
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert (body["error"]["code"], body["error"]["param"]) == (code, param), body
    return status


def test_errors_are_openai_shaped(server, client):
    chat = server.url + "/chat/completions"
    ok = {"model": "alpha", "messages": HELLO}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
    assert _error(*raw("POST", chat, ok), code="invalid_api_key") == 401
    assert _error(*raw("POST", chat, b'{"model": "alpha", ', key=KEY), code="invalid_json") == 400
    assert _error(*raw("POST", chat, {**ok, "temperature": 5}, key=KEY), code="invalid_value", param="temperature") == 400
    assert _error(*raw("POST", chat, {"model": "alpha"}, key=KEY), code="invalid_value", param="messages") == 400
    with pytest.raises(openai.NotFoundError) as e:
        _chat(client, "gamma")
    assert e.value.code == "model_not_found"
    assert _error(*raw("POST", chat, {**ok, "messages": [{"role": "user", "content": "x" * 30_000}]}, key=KEY),
                  code="request_too_large") == 413
    long = [{"role": "user", "content": "Hello! " * 600}]  # > 512 tokens of context
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="alpha", messages=long)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        _chat(client, "alpha", max_tokens=65)  # over --max-tokens
    assert e.value.code == "context_length_exceeded" and e.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        _chat(client, "docs")  # a RAG collection that was never indexed
    assert "handbook" in e.value.message
    assert _error(*raw("GET", server.root + "/nowhere", key=KEY), code="not_found") == 404


def test_queue_full_is_429_and_timeout_is_504(server, client):
    sched = server.scheduler
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        with sched._model_lock:  # the scheduler cannot step: submissions pile up
            waiting = [pool.submit(_chat, client, "alpha", n=2) for _ in range(4)]
            deadline = time.monotonic() + 5
            while sched.queue_depth < 8:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with pytest.raises(openai.RateLimitError):
                _chat(client, "alpha")
        assert all(len(f.result().choices) == 2 for f in waiting)
    sched.config.timeout = 0.05
    try:
        with sched._model_lock:
            late = concurrent.futures.ThreadPoolExecutor(1).submit(_chat, client, "alpha")
            time.sleep(0.3)
        with pytest.raises(openai.APIStatusError) as e:
            late.result()
        assert e.value.status_code == 504
    finally:
        sched.config.timeout = 600


# --- adapters at run time -----------------------------------------------------------------------


def test_admin_loads_and_unloads_adapters_inside_the_adapter_folder(server, client, world, tmp_path):
    admin = server.root + "/admin/adapters"
    status, card = raw("POST", admin, {"name": "alpha2", "path": "alpha"}, key=KEY)
    assert status == 201 and card["id"] == "alpha2"
    assert _chat(client, "alpha2").choices[0].message.content == _chat(client, "alpha").choices[0].message.content
    stray = shutil.copytree(world["alpha"], tmp_path / "stray")  # a loadable run outside runs/
    (world["runs"] / "escape").symlink_to(stray, target_is_directory=True)
    up = os.path.relpath(stray, world["runs"])  # ../../.../stray
    for path in [up, str(stray), "escape", f"alpha/../{up}", "nothere", "/etc"]:
        status, body = raw("POST", admin, {"name": "x", "path": path}, key=KEY)
        assert status == 400 and body["error"]["param"] == "path", (path, body)
    for name in ["../x", "a/b", "", "alpha"]:
        status, body = raw("POST", admin, {"name": name, "path": "beta"}, key=KEY)
        assert status in (400, 409) and body["error"]["param"] == "name", (name, body)
    assert raw("POST", admin, {"name": "y", "path": "beta"})[0] == 401
    status, _ = raw("DELETE", admin + "/alpha2", key=KEY)
    assert status == 200
    with pytest.raises(openai.NotFoundError):
        _chat(client, "alpha2")
    assert raw("DELETE", admin + "/alpha2", key=KEY)[0] == 404
    assert _chat(client, "alpha").choices[0].message.content  # the other adapters are untouched


def test_503_while_loading_and_admin_off_without_a_key(world, monkeypatch):
    from onthejob.serve import server as server_module

    gate = threading.Event()
    real = server_module.Scheduler.load

    def slow_load(*args, **kwargs):
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(server_module.Scheduler, "load", slow_load)
    s = ServerThread(create_app(ServeConfig(model=str(world["base"]), adapter_dirs=[world["runs"]], feedback_db=None)))
    try:
        status, body = raw("GET", s.root + "/health")
        assert status == 503 and body["status"] == "loading"
        status, body = raw("POST", s.url + "/chat/completions", {"model": "base", "messages": HELLO})
        assert status == 503 and body["error"]["code"] == "model_loading"
        gate.set()
        s.wait_ready()
        assert raw("GET", s.root + "/health")[1]["models"] == ["base"]  # no key set: loopback, names shown
        plain = openai.OpenAI(base_url=s.url, api_key="anything", max_retries=0)  # no key set: any key works
        assert _chat(plain, "base").choices[0].message.content
        assert raw("POST", s.root + "/admin/adapters", {"name": "a", "path": "alpha"})[0] == 403
    finally:
        s.stop()
