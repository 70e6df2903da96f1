"""Errors shared by every layer (a leaf module: it imports nothing of micropl).

The command line turns a user error into one line on stderr and exit code 2.
"""

__all__ = ["AnalysisInputError", "FileFormatError"]


class AnalysisInputError(ValueError):
    """Input data cannot be analysed as asked (no peaks, all zeros, bad shape...)."""


class FileFormatError(AnalysisInputError):
    """A data file is truncated, empty, foreign or otherwise unreadable."""
