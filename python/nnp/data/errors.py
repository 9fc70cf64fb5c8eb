"""Errors raised for bad dataset files."""


class DatasetError(ValueError):
    """A dataset file is missing, malformed or inconsistent; the message names the file and the frame."""
