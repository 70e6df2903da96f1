"""The error hierarchy shared by every layer (a leaf module: it imports nothing of micropl).

Two families:

* :class:`UserError`: the input cannot be used as given (a config, a data file, a
  session file, a parameter). The command line prints its message as one line on
  stderr and exits with code 2.
* :class:`InstrumentError`: an instrument failed or refused an action. The command
  line prints one line and exits with code 1.

Examples
--------
>>> from micropl.errors import FileFormatError, UserError
>>> issubclass(FileFormatError, UserError)
True
"""

__all__ = ["UserError", "ConfigError", "FileFormatError", "SessionBusyError",
           "AnalysisInputError", "InstrumentError", "LimitError", "InstrumentTimeout",
           "MissingExtraError"]


class UserError(ValueError):
    """Input that micropl cannot use as given; the message is one line naming it."""


class ConfigError(UserError):
    """A setup file is missing, unreadable or invalid; the message is one line."""


class AnalysisInputError(UserError):
    """Input data cannot be analysed as asked (no peaks, all zeros, bad shape...)."""


class FileFormatError(AnalysisInputError):
    """A data file is truncated, empty, foreign or otherwise unreadable."""


class SessionBusyError(UserError):
    """The session file is open for writing by another live process."""


class InstrumentError(RuntimeError):
    """An instrument failed or refused an action.

    The message names the instrument and the action, for example
    ``spectrograph 'acton': GOTO 9999.0 nm refused: range 0–1400 nm``.
    """


class LimitError(InstrumentError, ValueError):
    """A requested value lies outside what the instrument (or the config) allows.

    Raised by the driver before anything is sent to the device.
    """


class InstrumentTimeout(InstrumentError, TimeoutError):
    """An instrument did not answer in time."""


class MissingExtraError(InstrumentError, ImportError):
    """A driver needs an optional package that is not installed.

    The message names the pip extra or the vendor library to install.
    """
