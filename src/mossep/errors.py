"""The one exception type that the CLI turns into a one-line error message, and a helper for such lines."""


class MossepError(Exception):
    """A problem with the user's input, files or options. The message names what and where."""


def reason(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), to quote in a one-line error."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
