"""Expected, user-facing failures.

Anything raised as ``UserError`` is a problem with input the user controls (a config, a
data file, a checkpoint).  CLIs print it as one line and exit non-zero instead of
showing a traceback; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with user input, reported as a single clear line."""


class ConfigError(UserError):
    """A config file or override that does not match the schema."""


class DataError(UserError):
    """A data file that cannot be read or used."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or does not match the config/data."""
