"""Errors raised for bad dataset files."""

from ..errors import UserError


class DatasetError(UserError):
    """A dataset file is missing, malformed or inconsistent.

    The message always starts with the file (``<path>: ``), then the frame when one is at fault
    (``frame <k>: ``), the problem, and what to do about it.
    """
