"""Run one studio job: the CLI's ``main`` on the argv in ``FOLDER/job.json``, then ``exit.json``.

    python -m onthejob.studio.worker WS/jobs/ID        # what jobs.py starts; not for people
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from onthejob import fsutil


def main(folder: str) -> int:
    job = Path(folder)
    argv = json.loads((job / "job.json").read_text())["argv"]
    code = 70  # an error before main returns: the CLI's "internal error"
    try:
        from onthejob.cli import main as cli_main

        code = cli_main(argv)
    except KeyboardInterrupt:
        code = 130
    except SystemExit as e:  # argparse's usage errors
        code = e.code if isinstance(e.code, int) else 2
    finally:
        sys.stdout.flush()
        fsutil.write_json(job / "exit.json", {"code": code, "ended": time.time()})
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
