"""``python -m greenpool demo [options]``: see :mod:`greenpool.demo`."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "demo":
        sys.stderr.write("usage: python -m greenpool demo [--help]\n")
        return 2
    # The hub must be chosen, and the process monkey patched, before anything else
    # imports socket or threading: so the demo module decides that first.
    from . import demo

    return demo.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
