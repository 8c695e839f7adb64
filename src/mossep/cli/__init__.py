"""Command-line interface: a thin layer over the Python API.

Each command module registers its commands on `app`. Errors the user can fix (MossepError)
print one line on stderr and exit with status 1; Ctrl-C (SIGINT) and SIGTERM print one line and exit with
128 + the signal number, after the usual clean-up (temporary files removed, no partial outputs).
"""
from __future__ import annotations

import signal
import sys

from ..errors import MossepError
from ..fsutil import os_error_text
from ..memory import reuse_freed_memory
from .app import app

from . import separate, models, pretrained, evaluate, train, export  # noqa: E402,F401  (register commands)

STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Stopped(BaseException):
    """Raised by the signal handler so that `finally` clauses and context managers clean up.

    A BaseException (like KeyboardInterrupt) so that handlers of Exception do not swallow it; not a
    KeyboardInterrupt, which typer would turn into a silent exit."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame) -> None:
    raise Stopped(signum)


def _install_handlers() -> dict:
    """Handle SIGINT/SIGTERM unless they are ignored (e.g. `nohup`, background jobs); returns the old ones."""
    old = {}
    for sig in STOP_SIGNALS:
        try:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                old[sig] = signal.signal(sig, _stop)
        except ValueError:  # not the main thread: leave signals alone
            pass
    return old


# Options whose value may be left out (`--ray` alone means "local"); typer's options always take one
OPTIONAL_VALUES = {"--ray": "local"}


def with_optional_values(argv: list[str]) -> list[str]:
    """argv with the implied value after an option of OPTIONAL_VALUES given without one (last, or followed by
    another option)."""
    out = []
    for i, a in enumerate(argv):
        out.append(a)
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if a in OPTIONAL_VALUES and (nxt is None or (nxt.startswith("-") and len(nxt) > 1)):
            out.append(OPTIONAL_VALUES[a])
    return out


def os_error_line(e: OSError) -> str:
    """One line for an OSError: the path (long ones shortened in the middle) and the system's reason."""
    name = str(e.filename) if e.filename is not None else ""
    if len(name) > 100:
        name = name[:60] + "..." + name[-30:]
    why = (os_error_text(e) or type(e).__name__).lower()
    return f"{name}: {why}" if name else why


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # the `mossep` program: the process is ours (a caller's main([...]) keeps its allocator)
        reuse_freed_memory()
    old = _install_handlers()
    try:
        argv = with_optional_values(list(sys.argv[1:] if argv is None else argv))
        app(args=argv, prog_name="mossep")  # typer handles usage errors itself (exit 2)
    except MossepError as e:
        print(f"mossep: error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:  # a refusal of the file system that no check of ours met first (e.g. a name too long)
        print(f"mossep: error: {os_error_line(e)}", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, Stopped) as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        print(f"mossep: {STOP_SIGNALS[signum]}", file=sys.stderr)
        sys.exit(128 + signum)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
