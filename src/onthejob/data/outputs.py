"""Write data files without harming the input: check every output first, then write them whole.

    ojt data split data.jsonl --eval-split 0.1 --train-out train.jsonl --eval-out eval.jsonl
    ojt data convert data.json --out data.jsonl

An output that is an input (by path, through a symlink or as a hard link), the same file as another
output, a directory, or under a file is refused before anything is read or written. Files are
written through ``fsutil.atomic_file``: each to a temporary sibling, renamed over its target only
once every output of the command is complete, so a failure leaves the old files as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from onthejob.errors import DataError
from onthejob.fsutil import atomic_file


def check_outputs(inputs: Sequence[str | Path], outputs: Sequence[tuple[str, str | Path]]) -> None:
    """Refuse unsafe outputs; ``outputs`` pairs each path with the flag that named it."""
    seen: list[tuple[str, Path]] = []
    for flag, out in outputs:
        path, where = Path(out), f"{flag} {out}"
        if path.is_dir():
            raise DataError(f"{where} is a directory", fix=f"give a file path, e.g. {path / 'data.jsonl'}")
        _check_parent(path, where)
        for source in inputs:
            if _same_file(path, Path(source)):
                raise DataError(f"{where} is the input file {source}; writing it would destroy the input",
                                fix="write to another file")
        for other_flag, other in seen:
            if _same_file(path, other):
                raise DataError(f"{other_flag} and {flag} are the same file ({out}); one would overwrite the other",
                                fix="give each output its own file")
        seen.append((flag, path))


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):  # also when neither exists yet
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _check_parent(path: Path, where: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"{where}: {parent} is a file, not a folder", fix="choose a path inside a folder")
            return


def write_jsonl_files(outputs: Sequence[tuple[str | Path, Iterable[dict[str, Any]]]]) -> list[int]:
    """Write each ``(path, records)`` as JSONL, all or none; returns the record count of each."""
    counts, path = [], None
    try:
        with contextlib.ExitStack() as stack:
            for path, records in outputs:
                f = stack.enter_context(atomic_file(path))
                n = 0
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    n += 1
                counts.append(n)
    except OSError as e:
        reason = e.strerror or str(e)
        raise DataError(f"{e.filename or path}: cannot write: {reason[:1].lower() + reason[1:]}",
                        fix="check the folder's permissions and free space, or choose another path") from e
    return counts
