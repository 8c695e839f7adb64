"""Command-line interface: a thin layer over the Python API.

Each command module registers its commands on `app`. Errors the user can fix (MossepError)
print one line on stderr and exit with status 1; Ctrl-C exits with 130.
"""
from __future__ import annotations

import sys

from ..errors import MossepError
from .app import app

from . import separate, models, evaluate, train  # noqa: E402,F401  (register commands)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="mossep")  # typer handles usage errors itself (exit 2)
    except MossepError as e:
        print(f"mossep: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("mossep: interrupted", file=sys.stderr)
        sys.exit(130)
