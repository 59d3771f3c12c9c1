import copy
import json
import shutil
import subprocess

import pytest

from onthejob.errors import ModelError
from onthejob.export.modelfile import go_template, modelfile, stop_strings, turns
from tests.tiny import tiny_tokenizer

S = {"role": "system", "content": "You answer from the Corvane Freight handbook."}
U1 = {"role": "user", "content": "How many days of leave do I get?"}
A1 = {"role": "assistant", "content": "Full-time staff get 25 days a year."}
U2 = {"role": "user", "content": 'And "carry-over"?\nTell me {{ briefly }}.'}
CONVERSATIONS = [[S, U1, A1, U2], [U1], [U1, A1, U2], [S, U1, A1]]

# Renders an Ollama TEMPLATE with Go's own text/template, as Ollama does, with .Messages holding
# Role and Content: one prompt per conversation read from stdin.
GO_RENDERER = """package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string
	Content string
}

func main() {
	src, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("modelfile").Parse(string(src)))
	var conversations [][]Message
	if err := json.NewDecoder(os.Stdin).Decode(&conversations); err != nil {
		panic(err)
	}
	var out []string
	for _, messages := range conversations {
		var b strings.Builder
		if err := tmpl.Execute(&b, map[string]any{"Messages": messages}); err != nil {
			panic(err)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
"""


def hf(tokenizer, conversation):
    return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=conversation[-1]["role"] != "assistant")


def go_render(template: str, conversations, tmp_path) -> list[str]:
    (tmp_path / "render.go").write_text(GO_RENDERER)
    (tmp_path / "template.txt").write_text(template)
    env = {"PATH": "/usr/bin:/bin:/usr/local/go/bin", "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "cache"),
           "GOPATH": str(tmp_path / "gopath"), "GO111MODULE": "off"}
    done = subprocess.run(["go", "run", str(tmp_path / "render.go"), str(tmp_path / "template.txt")], env=env,
                          input=json.dumps(conversations), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_turns_re_render_the_jinja_template(template):
    tokenizer = tiny_tokenizer(template)
    found = turns(tokenizer)
    for conversation in CONVERSATIONS:
        assert found.render(conversation) == hf(tokenizer, conversation)
    if template == "chatml":  # the default system prompt SmolLM2's template writes without a system message
        assert "You are a helpful AI assistant named SmolLM" in found.head
    else:
        assert found.head == "<|begin_of_text|>"


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (scripts/setup.sh installs it where apt-get can)")
@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_go_renders_the_modelfile_template_as_the_run_renders_its_prompts(template, tmp_path):
    tokenizer = tiny_tokenizer(template)
    rendered = go_render(go_template(turns(tokenizer)), CONVERSATIONS, tmp_path)
    assert rendered == [hf(tokenizer, c) for c in CONVERSATIONS]


def test_stop_strings_hold_every_end_of_turn_string():
    chatml = tiny_tokenizer("chatml")
    assert "<|im_end|>" in stop_strings(chatml, turns(chatml))
    llama3 = tiny_tokenizer("llama3")
    assert "<|eot_id|>" in stop_strings(llama3, turns(llama3))


def test_modelfile_names_the_gguf_system_and_stops():
    text = modelfile(tiny_tokenizer("chatml"), gguf_name="hr.q8_0.gguf", system="You are the HR assistant.")
    assert "FROM ./hr.q8_0.gguf\n" in text
    assert 'SYSTEM """You are the HR assistant."""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER temperature 0" in text


def test_a_template_that_rewrites_content_is_refused():
    changed = copy.deepcopy(tiny_tokenizer("chatml"))  # never mutate the cached tokenizer
    changed.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] | upper + '<|im_end|>\n' }}"
                             "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    with pytest.raises(ModelError, match="cannot write this chat template as an Ollama TEMPLATE"):
        turns(changed)
