"""The canonical form of training data, and the problems found in it.

An example is an OpenAI chat record: ``{"messages": [...], "tools": [...]?}``. Each message has a
``role`` (system, user, assistant or tool) and a string ``content``; assistant messages may carry
``tool_calls`` and a ``weight`` (0 = shown to the model but not trained on, 1 = trained); tool
messages may carry ``tool_call_id`` and ``name``. Every reader turns its format into this form, so
checking, templating and training know one shape only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = ("role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call")

Severity = Literal["error", "warning"]


@dataclass
class Example:
    """One training example in canonical form, with where it came from."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    source: str = "<memory>"
    line: int = 0  # 1-based line (JSONL) or record position (JSON array, CSV row); 0 = unknown

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"messages": self.messages}
        if self.tools:
            record["tools"] = self.tools
        return record

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass
class Problem:
    """One thing wrong (error) or suspicious (warning) in a data file."""

    severity: Severity
    code: str  # e.g. "missing_content"; the OpenAI cookbook's names where they exist
    message: str  # what is wrong
    fix: str  # how to fix it
    source: str = "<memory>"
    line: int = 0  # 1-based; 0 = the file as a whole
    message_index: int | None = None  # index into "messages", when one message is at fault

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        if self.message_index is not None:
            where += f" message {self.message_index}"
        return f"{where}: {self.severity}: {self.code}: {self.message} — {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
            "file": self.source,
            "line": self.line,
            "message_index": self.message_index,
        }


class HasProblems:
    """``errors`` and ``warnings`` views over a ``problems`` list."""

    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


@dataclass
class ReadResult(HasProblems):
    """What a reader returns: the examples it could build and the problems it met on the way."""

    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    format: str = ""
