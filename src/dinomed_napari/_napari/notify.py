"""Napari notifications for errors the user can fix (the widget stays usable)."""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning

from dinomed_napari.errors import DinomedError


def report_error(exc: BaseException, action: str = "") -> str:
    """Show ``exc`` as a napari error notification and return the message shown.

    Expected errors (bad input, missing weights, cancelled runs) show their own message; anything else
    also says its type, so a bug report can quote it.
    """
    text = str(exc) if isinstance(exc, DinomedError | ValueError | FileNotFoundError) else (
        f"{type(exc).__name__}: {exc}")
    msg = f"{action}: {text}" if action else text
    show_error(msg)
    return msg


def info(message: str) -> None:
    """Show an info notification (finished runs, which weights made a layer ...)."""
    show_info(message)


def warn(message: str) -> None:
    """Show a warning notification (e.g. a cancelled extraction)."""
    show_warning(message)
