"""Errors raised for bad input: each names the thing, the problem and the fix."""


class BrainalignError(Exception):
    """A user-facing error whose message is complete on its own (no traceback needed)."""


class ConfigError(BrainalignError):
    """The configuration is invalid."""


class DataError(BrainalignError):
    """An input data file is missing, malformed or inconsistent."""


class StaleFileError(DataError):
    """A cached result no longer matches the configuration that asks for it."""


class ModelError(BrainalignError):
    """A model cannot be found, loaded or run as configured."""
