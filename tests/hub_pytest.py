"""Run pytest in this process under one hub: ``python tests/hub_pytest.py HUB [pytest args]``.

eventlet and gevent monkey patch the whole process, so each hub gets a
process of its own, patched before pytest (or anything else) is imported.
"""

import os
import sys
import warnings

HUBS = ("threads", "eventlet", "gevent")


def main(argv: list) -> int:
    if not argv or argv[0] not in HUBS:
        sys.stderr.write(f"usage: hub_pytest.py {{{'|'.join(HUBS)}}} [pytest args]\n")
        return 2
    hub, args = argv[0], argv[1:]
    os.environ["GREENPOOL_TEST_HUB"] = hub
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    if hub == "eventlet":
        import eventlet

        eventlet.monkey_patch()
    elif hub == "gevent":
        from gevent import monkey

        monkey.patch_all()
    import pytest

    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
