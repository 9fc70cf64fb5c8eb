"""The base of every error that a user can fix: a file, a config value, an option, a model/data mismatch.

Its message names the problem and the fix. The ``nnp`` command prints it as one line and exits with
code 2; anything else that escapes is a bug in nnp and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user; the message says what is wrong and what to do."""
