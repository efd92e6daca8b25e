"""Run the greenpool demo from a fresh clone: ``python3 examples/demo.py [demo options]``.

Sets up ``.venv`` first (the same one ``tests/run.py`` makes: greenpool and
eventlet, gevent and the drivers), then runs ``python -m greenpool demo``
in it: 200 green threads sharing 10 SQLite connections, with progress and a
summary.  If the set-up cannot be done (no network), the demo runs here on
plain threads instead.  Options are the demo's: ``--help`` lists them.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    from tests.run import PYTHON, ensure_venv

    try:
        ensure_venv()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"(could not set up .venv: {exc}; running on plain threads instead)")
        from greenpool import demo

        return demo.main(["--hub", "threads", *sys.argv[1:]])
    return subprocess.call([PYTHON, "-m", "greenpool", "demo", *sys.argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
