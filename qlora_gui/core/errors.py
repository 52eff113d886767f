"""Errors a person can act on. Their message says what is wrong and what to do."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a path, a setting, a model or data. Exit code 2 on the CLI."""

    exit_code = 2


class ConfigError(UserError):
    """A bad setting; `setting` is its config key when one setting is to blame, and `why` the rest."""

    def __init__(self, message: str, setting: str = "", why: str = ""):
        super().__init__(message)
        self.setting = setting
        self.why = why or message


class ModelError(UserError):
    pass


class DataError(UserError):
    """The data intake found problems; `lines` holds the FILE:LINE: list to show."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = lines


class TrainingError(Exception):
    """Training itself failed (for example, too many bad steps). Exit code 1."""

    exit_code = 1
