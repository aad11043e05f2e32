"""The CLI's one error path: every expected failure becomes one line on stderr and exit code 2."""

from __future__ import annotations

import errno

from dinomed_napari.errors import plain_message

#: What to do about an OS error, by errno.
_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write to another disk",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
    errno.EACCES: "choose a file or folder you may write (or read)",
    errno.EPERM: "choose a file or folder you may write",
    errno.EROFS: "write to another folder",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "this is a folder: give a file name",
    errno.ENAMETOOLONG: "choose a shorter name",
}
def describe_os_error(exc: OSError) -> str:
    """``<file>: <what happened> (<what to do>)`` for an OSError."""
    names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or str(exc) or type(exc).__name__
    hint = _HINTS.get(exc.errno or -1)
    text = f"{names}: {what}" if names else what
    return text + (f" ({hint})" if hint else "")


def one_line(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) for an exception that reached the CLI."""
    from dinomed_napari.errors import DinomedError

    if isinstance(exc, (DinomedError, ValueError)):
        return f"error: {plain_message(exc)}", 2
    if isinstance(exc, OSError):
        return f"error: {plain_message(describe_os_error(exc))}", 2
    if isinstance(exc, MemoryError):
        return ("error: not enough memory for this input (an absurd header size, or a volume too large for "
                f"this machine) {plain_message(exc)}".rstrip(), 2)
    return (f"error: unexpected {type(exc).__name__}: {plain_message(exc)}. Rerun with --debug for the "
            "traceback and please report it.", 1)
