"""An Ollama ``Modelfile`` whose TEMPLATE renders prompts exactly as the run's chat template does.

    from onthejob.export.modelfile import modelfile
    text = modelfile(tokenizer, gguf_name="hr.q8_0.gguf", system="You are the HR assistant.")

Ollama renders prompts with Go's text/template, not Jinja, so the run's template cannot be copied.
Instead its turn structure is read off by rendering: sentinel contents in a system, user and
assistant message give each role's text before and after the content, the generation prompt, and
what the template writes first when a conversation has no system message (SmolLM2's default
system prompt; a BOS for Llama 3). The Go template writes those pieces back; every literal is a
quoted Go string inside an action, so Go's whitespace trimming never touches the prompt text.

``turns`` refuses a template that is not built that way (content rewritten, turns that depend on
their neighbours): the structure found must re-render a set of conversations exactly as Jinja
does, or the export stops with an error rather than ship a Modelfile that answers garbage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from onthejob.data.template import end_of_turn_ids
from onthejob.errors import ModelError

ROLES = ("system", "user", "assistant")
_MARK = {"system": "\u2063SYS\u2063", "user": "\u2063USR\u2063", "assistant": "\u2063AST\u2063"}


@dataclass(frozen=True)
class Turns:
    """A chat template as pieces: ``wrap[role] = (before, after)`` the message content."""

    wrap: dict[str, tuple[str, str]]
    generation: str  # written after the last message when it is not the assistant's
    head: str  # written first when the first message is not a system message

    def render(self, messages: list[dict]) -> str:
        """The prompt the Go template gives: the same algorithm, in Python (for the self-check)."""
        out = []
        for i, m in enumerate(messages):
            if i == 0 and m["role"] != "system":
                out.append(self.head)
            before, after = self.wrap[m["role"]]
            out.append(before + m["content"] + after)
        if messages and messages[-1]["role"] != "assistant":
            out.append(self.generation)
        return "".join(out)


def turns(tokenizer) -> Turns:
    """Read the turn structure off ``tokenizer``'s chat template; see the module docstring."""
    sys_, usr, ast = ({"role": r, "content": _MARK[r]} for r in ROLES)
    a = _render(tokenizer, [sys_], False)
    b = _render(tokenizer, [sys_, usr], False)
    c = _render(tokenizer, [sys_, usr, ast], False)
    g = _render(tokenizer, [sys_, usr], True)
    u = _render(tokenizer, [usr], False)
    if not (b.startswith(a) and c.startswith(b) and g.startswith(b)):
        raise _cannot("a turn changes the text of the turns before it")
    wrap = {"system": _split(a, "system"), "user": _split(b[len(a):], "user"), "assistant": _split(c[len(b):], "assistant")}
    user_block = b[len(a):]
    if not u.endswith(user_block):
        raise _cannot("a first user message is written differently from a later one")
    found = Turns(wrap, g[len(b):], u[: len(u) - len(user_block)])
    for conversation in _probes():
        if found.render(conversation) != _render(tokenizer, conversation, conversation[-1]["role"] != "assistant"):
            raise _cannot("its turns do not render the same way in every position")
    return found


def go_template(found: Turns) -> str:
    """The Ollama TEMPLATE (Go text/template) for ``found``."""
    q = _go_string
    branches = "".join(
        f'{{{{- {"if" if i == 0 else "else if"} eq $m.Role "{role}" }}}}'
        f"{{{{ {q(found.wrap[role][0])} }}}}{{{{ $m.Content }}}}{{{{ {q(found.wrap[role][1])} }}}}\n"
        for i, role in enumerate(ROLES)
    )
    return (
        "{{- range $i, $m := .Messages }}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        f'{{{{- if and (eq $i 0) (ne $m.Role "system") }}}}{{{{ {q(found.head)} }}}}{{{{- end }}}}\n'
        f"{branches}"
        "{{- end }}\n"
        f'{{{{- if and $last (ne $m.Role "assistant") }}}}{{{{ {q(found.generation)} }}}}{{{{- end }}}}\n'
        "{{- end }}"
    )


def stop_strings(tokenizer, found: Turns) -> list[str]:
    """Every string that ends a turn: the end-of-turn tokens, EOS, and the token opening a turn."""
    stops = [tokenizer.decode([i]) for i in end_of_turn_ids(tokenizer)]
    if tokenizer.eos_token:
        stops.append(tokenizer.eos_token)
    specials = sorted(set(tokenizer.all_special_tokens), key=len, reverse=True)
    opening = found.wrap["user"][0]
    stops += [s for s in specials if opening.lstrip().startswith(s)][:1]
    return [s for i, s in enumerate(stops) if s.strip() and s not in stops[:i]]


def modelfile(tokenizer, *, gguf_name: str, system: str | None) -> str:
    """The Modelfile text: FROM the GGUF beside it, TEMPLATE, SYSTEM and the stop parameters."""
    found = turns(tokenizer)
    lines = [f"# Written by ojt export. Create it with: ollama create NAME -f Modelfile",
             f"FROM ./{gguf_name}",
             f'TEMPLATE """{_triple_quoted(go_template(found))}"""']
    if system:
        lines.append(f'SYSTEM """{_triple_quoted(system)}"""')
    lines += [f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}" for s in stop_strings(tokenizer, found)]
    lines += ["# Greedy decoding, as ojt eval and the export's parity check answer; raise it for varied answers.",
              "PARAMETER temperature 0",
              "PARAMETER repeat_penalty 1"]
    return "\n".join(lines) + "\n"


def _render(tokenizer, messages: list[dict], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _split(block: str, role: str) -> tuple[str, str]:
    mark = _MARK[role]
    if block.count(mark) != 1:
        raise _cannot(f"the {role} message's content is not written once, as it is")
    before, _, after = block.partition(mark)
    return before, after


def _probes() -> list[list[dict]]:
    s = {"role": "system", "content": "You answer from company policy."}
    u1 = {"role": "user", "content": "How many days of leave do I get?"}
    a1 = {"role": "assistant", "content": "You get 25 days a year."}
    u2 = {"role": "user", "content": "And when do they reset?"}
    return [[s, u1], [u1], [s, u1, a1, u2], [u1, a1, u2], [s, u1, a1], [u1, a1, u2, a1, u1]]


def _go_string(text: str) -> str:
    # A Go interpreted string literal: JSON's escapes (\n, \", \\, \u00XX) are Go's too; non-ASCII
    # stays as UTF-8 because Go rejects the surrogate pairs JSON uses beyond the BMP.
    return json.dumps(text, ensure_ascii=False)


def _triple_quoted(text: str) -> str:
    if '"""' in text:
        raise ModelError('the template or system prompt holds """, which a Modelfile cannot quote',
                         fix="remove the triple quote from the system prompt")
    return text


def _cannot(why: str) -> ModelError:
    return ModelError(f"cannot write this chat template as an Ollama TEMPLATE: {why}",
                      fix="export with --to gguf (llama.cpp reads the template in the file) or --to merged")
