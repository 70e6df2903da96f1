"""Exceptions for bad input to the analysis layer (defined in :mod:`micropl.errors`).

The CLI turns these into one line on stderr and exit code 2.
"""

from micropl.errors import AnalysisInputError, FileFormatError

__all__ = ["AnalysisInputError", "FileFormatError"]
