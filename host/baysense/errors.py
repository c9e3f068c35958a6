"""The exception family for failures a user can act on.

A BaysenseError is a user, input or device error: the CLI prints it as
`baysense: <what failed> (<value>): <what to do>` and exits with status 1. Any other
exception is a bug and keeps its traceback (shown with --verbose).
"""


class BaysenseError(Exception):
    """A failure the user can fix; `hint` gives the fix."""

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        if self.hint:
            return "%s: %s" % (self.message, self.hint)
        return self.message


class ConfigError(BaysenseError):
    """Invalid configuration, board definition, manifest or option value."""


class DeviceError(BaysenseError):
    """The board did not respond as expected, or code on it raised."""


class DeviceException(DeviceError):
    """An exception raised by code running on the board, re-raised on the host.

    `exc_type` is the device exception's class name (for example "OSError") and `errno`
    its error number where the device gave one.
    """

    def __init__(self, exc_type, message, traceback_text, errno=None):
        super().__init__("%s on the board: %s" % (exc_type, message))
        self.exc_type = exc_type
        self.device_message = message
        self.traceback_text = traceback_text
        self.errno = errno
