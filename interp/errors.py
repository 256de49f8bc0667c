"""The one exception type the CLI turns into a single line of output."""


class InterpError(Exception):
    """A user-facing error: bad input, a missing file, an unsupported model.

    The CLI prints ``error: <message>`` and exits with status 2, without a traceback.
    """
