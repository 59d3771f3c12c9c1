"""User-facing errors.

Every error a user can cause is one of these. The CLI prints ``str(error)`` on one line and exits
with ``error.exit_code``; the traceback only appears with ``--debug``. Messages say what failed,
where (file:line or config key) and how to fix it.

Exit codes: 1 any other user error, 2 a command line argparse cannot read, 3 config, 4 model,
5 run folder, 6 RAG collection or store, 7 data, 8 an exported model that
fails its parity check, 70 an internal error (a bug), 130 Ctrl-C.
"""

from __future__ import annotations

import errno


class OjtError(Exception):
    """Base class: something the user can fix."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


class DataError(OjtError):
    """A data file is missing, unreadable or fails the checks."""

    exit_code = 7


class ConfigError(OjtError):
    """A config file or override is invalid; ``problems`` lists every one at once."""

    exit_code = 3

    def __init__(self, message: str, problems: list[str] | None = None, *, fix: str | None = None):
        self.problems = problems or []
        super().__init__(message, fix=fix)

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(f"  {p}" for p in self.problems)


class ModelError(OjtError):
    """A model cannot be found, converted or loaded."""

    exit_code = 4


class RunError(OjtError):
    """A run folder is missing, incomplete or inconsistent."""

    exit_code = 5


class ParityError(OjtError):
    """An exported model answers worse than the run it came from; the message holds the table."""

    exit_code = 8


class RagError(OjtError):
    """A RAG collection or store is missing, inconsistent or unreachable."""

    exit_code = 6


_OS_FIXES = {
    errno.ENOSPC: "free some space, or choose a folder on another disk",
    errno.EDQUOT: "free some space, or choose a folder on another disk",
    errno.EFBIG: "the file is larger than this system allows a process to write; choose another disk",
    errno.EROFS: "choose a folder on a writable disk",
    errno.EACCES: "check the permissions, or choose another folder",
    errno.EPERM: "check the permissions, or choose another folder",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def from_os_error(error: OSError) -> OjtError:
    """An operating-system failure (a full or read-only disk, a permission) as one line naming the
    path; exit code 1."""
    where = f"{error.filename}: " if error.filename else ""
    return OjtError(f"{where}{error.strerror or error}", fix=_OS_FIXES.get(error.errno))
