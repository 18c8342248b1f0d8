"""The one error users see: bad input, reported as `file:line: key: message`."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Bad input or a refused operation: one line, exit code 2, no traceback."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None,
                 line: int | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.message, self.file, self.line, self.key = message, file, line, key

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        if self.key:
            where += f"{self.key}: "
        return where + self.message


class TransferError(UserError):
    """A transfer to or from a remote that failed (unreachable, rejected, corrupted object, disk
    full): one line, exit code 1, no traceback. Rerunning the command resumes it."""

    exit_code = 1


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
