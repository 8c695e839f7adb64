"""The one exception type that the CLI turns into a one-line error message."""


class MossepError(Exception):
    """A problem with the user's input, files or options. The message names what and where."""
