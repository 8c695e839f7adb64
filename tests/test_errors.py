"""The one-line quoting of an underlying exception that every loader uses in its MossepError."""
from mossep.errors import reason


def test_reason_is_the_first_nonblank_line_or_the_type():
    assert reason(ValueError("\n  bad header\nmore detail\n")) == "bad header"
    assert reason(OSError()) == "OSError"
    assert reason(RuntimeError("   ")) == "RuntimeError"  # train.resume used to raise IndexError here
