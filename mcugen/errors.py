"""The one exception type the command line turns into a single line on stderr."""


class McugenError(Exception):
    """A problem with the user's input or environment, explained in one line."""
