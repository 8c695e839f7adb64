"""The error contract every command relies on (README, "Errors"): a MossepError becomes one line on stderr,
`mossep: error: <what and where>`, with exit status 1, nothing on stdout and no traceback; Ctrl-C and SIGTERM
become one line with 130 / 143; the signal handlers mossep installs are put back afterwards. And the one-line
quoting of an underlying exception (`reason`) that every loader uses in its MossepError.

Each command's own errors (which message, which leftovers) are tested with the command: test_cli_separate.py,
test_cli_models.py, test_evaluate.py, test_train.py, test_checkpoints.py.
"""
from __future__ import annotations

import signal

import pytest

import mossep.cli as cli
from mossep.errors import MossepError, reason


def _main_with(monkeypatch, capsys, exc: BaseException) -> tuple[int, str, str]:
    def app(*args, **kwargs):
        raise exc

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit) as e:
        cli.main(["anything"])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_mossep_error_is_one_line_with_status_1(monkeypatch, capsys):
    code, out, err = _main_with(monkeypatch, capsys, MossepError("in.wav: not a readable audio file"))
    assert code == 1 and out == ""
    assert err == "mossep: error: in.wav: not a readable audio file\n"


@pytest.mark.parametrize("exc, code, line", [(KeyboardInterrupt(), 130, "mossep: interrupted\n"),
                                             (cli.Stopped(signal.SIGINT), 130, "mossep: interrupted\n"),
                                             (cli.Stopped(signal.SIGTERM), 143, "mossep: terminated\n")])
def test_stop_signals_are_one_line_with_128_plus_the_signal(monkeypatch, capsys, exc, code, line):
    assert _main_with(monkeypatch, capsys, exc) == (code, "", line)


def test_signal_handlers_are_installed_during_a_command_and_restored_after(monkeypatch, capsys):
    before = {s: signal.getsignal(s) for s in cli.STOP_SIGNALS}
    seen = {}

    def app(*args, **kwargs):
        seen.update({s: signal.getsignal(s) for s in cli.STOP_SIGNALS})

    monkeypatch.setattr(cli, "app", app)
    cli.main(["anything"])
    assert all(seen[s] is cli._stop for s in cli.STOP_SIGNALS)  # a signal raises Stopped, so clean-up runs
    assert {s: signal.getsignal(s) for s in cli.STOP_SIGNALS} == before
    with pytest.raises(cli.Stopped) as e:
        cli._stop(signal.SIGTERM, None)
    assert e.value.signum == signal.SIGTERM and not isinstance(e.value, Exception)  # `except Exception` can't eat it


def test_an_ignored_signal_stays_ignored(monkeypatch, capsys):
    """Under nohup (SIGINT/SIGTERM ignored) mossep must not start reacting to them."""
    old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        seen = {}
        monkeypatch.setattr(cli, "app", lambda *a, **k: seen.update(term=signal.getsignal(signal.SIGTERM)))
        cli.main(["anything"])
        assert seen["term"] is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, old)


def test_reason_is_the_first_nonblank_line_or_the_type():
    assert reason(ValueError("\n  bad header\nmore detail\n")) == "bad header"
    assert reason(OSError()) == "OSError"
    assert reason(RuntimeError("   ")) == "RuntimeError"  # train.resume used to raise IndexError here
