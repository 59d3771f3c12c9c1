import io

import pytest

from onthejob.generate import engine as engine_module
from onthejob.generate.chat import run_chat
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from tests.runs import save_base

PARAMS = SamplingParams(max_new_tokens=6)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_base(tmp_path_factory.mktemp("chat") / "base")


@pytest.fixture
def seen(monkeypatch):
    """Every conversation the chat sends to the engine, as it was sent."""
    conversations = []

    class Spy(Engine):
        def stream(self, conversation, params=None, *, tools=None):
            conversations.append([dict(m) for m in conversation])
            return super().stream(conversation, params, tools=tools)

    monkeypatch.setattr(engine_module, "Engine", Spy)  # what load_engine builds
    return conversations


def chat_with(base, text, **kwargs) -> str:
    out = io.StringIO()
    assert run_chat(str(base), params=PARAMS, input=io.StringIO(text), output=out, **kwargs) == 0
    return out.getvalue()


def test_multi_turn_keeps_history_and_reset_clears_it(base, seen):
    shown = chat_with(base, "Hello\nWhat is the weather?\n/reset\nHi\n/exit\nnever read\n",
                      system="Be brief.")
    assert shown.splitlines()[0].startswith(f"chatting with {base}")
    assert [[m["role"] for m in c] for c in seen] == [
        ["system", "user"], ["system", "user", "assistant", "user"], ["system", "user"]]
    assert seen[1][1] == {"role": "user", "content": "Hello"}
    assert f"you> {seen[1][2]['content']}\nyou> " in shown  # the streamed first answer
    assert seen[2][1]["content"] == "Hi"
    assert "(conversation cleared)" in shown
    assert "never read" not in str(seen)


def test_answers_are_the_engine_answers(base, seen):
    from onthejob.models.adapters import load_for_inference

    shown = chat_with(base, "Hello\n")  # end of input without /exit
    loaded = load_for_inference(base)
    [expected] = Engine(loaded.model, loaded.tokenizer).generate(
        [[{"role": "user", "content": "Hello"}]], PARAMS)
    assert seen[0][-1]["content"] == "Hello"
    assert f"you> {expected.text}\n" in shown


def test_ctrl_c_exits_cleanly(base):
    class Interrupt(io.StringIO):
        def readline(self, *args):
            raise KeyboardInterrupt

    out = io.StringIO()
    assert run_chat(str(base), params=PARAMS, input=Interrupt(), output=out) == 0
    assert out.getvalue().endswith("\n")
