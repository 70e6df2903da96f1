"""Exceptions for bad input to the analysis layer.

The CLI turns these into one line on stderr and exit code 2.
"""


class AnalysisInputError(ValueError):
    """Input data cannot be analysed as asked (no peaks, all zeros, bad shape...)."""


class FileFormatError(AnalysisInputError):
    """A data file is truncated, empty, foreign or otherwise unreadable."""
