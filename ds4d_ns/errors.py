"""User errors: one line naming the file or flag and the fix, exit code 2, no traceback.

Every problem caused by what the user gave (a file, a flag, missing weights) is raised as a
subclass of :class:`UserError` (or one of the standard types listed in :data:`USER_ERROR_TYPES`)
and reported by :func:`exit_on_user_error` at the command's entry point. Anything else is a bug and
keeps its traceback. User-supplied text (paths, flags) may contain rich markup characters
(``clip[final].mp4``, ``[/y]``): messages are always escaped before printing.

This module is imported by the dataparser entry point, so it stays light (rich and the standard
library only).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn, Tuple, Type

from rich.markup import escape


class UserError(ValueError):
    """A problem with the user's input, flags or environment; the message says what and how to fix it."""


class WeightsUnavailable(UserError, RuntimeError):
    """Pretrained weights a run needs could not be loaded; the message names the model and the way out."""


USER_ERROR_TYPES: Tuple[Type[BaseException], ...] = (UserError, FileExistsError, FileNotFoundError, NotADirectoryError)
"""Exception types reported as one line (not a traceback) by :func:`exit_on_user_error`."""


def report_user_error(tool: str, err: BaseException) -> None:
    """Print ``tool: message`` in red through nerfstudio's console, with the message escaped."""
    from nerfstudio.utils.rich_utils import CONSOLE

    message = str(err).strip() or type(err).__name__
    CONSOLE.print(f"[bold red]{escape(tool)}: {escape(message)}", soft_wrap=True)


def exit_with_user_error(tool: str, err: BaseException) -> NoReturn:
    """Report ``err`` and exit with status 2 (the status of a usage error, as argparse uses)."""
    report_user_error(tool, err)
    sys.exit(2)


@contextmanager
def exit_on_user_error(tool: str, *extra: Type[BaseException]) -> Iterator[None]:
    """Turn user errors raised inside the block into one message and exit status 2."""
    try:
        yield
    except USER_ERROR_TYPES + tuple(extra) as err:
        exit_with_user_error(tool, err)
