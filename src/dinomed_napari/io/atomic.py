"""Writes that cannot lose data: a temporary file next to the target, renamed over it only when complete.

A failed write (disk full, Ctrl-C, a crash) leaves the old file untouched and no partial file under the
target's name; `check_outputs` refuses, before any slow work, an output that is one of the inputs or that
exists without ``overwrite``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from dinomed_napari.errors import OutputError


def temp_sibling(target: str | os.PathLike, tag: str = "tmp") -> Path:
    """A fresh hidden name in the target's folder that keeps its suffixes (writers pick formats by them):
    ``out/labels.nii.gz`` -> ``out/.tmp-1a2b3c4d.labels.nii.gz``."""
    target = Path(target)
    return target.with_name(f".{tag}-{uuid.uuid4().hex[:8]}.{target.name}")


def remove(path: Path) -> None:
    """Delete a file or folder if it exists (best effort: used while cleaning up after a failure)."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def replace_path(tmp: Path, target: Path) -> None:
    """Move the complete ``tmp`` onto ``target`` (files: one atomic rename; folders: the old one is moved
    aside first and deleted only after the new one is in place)."""
    _fsync(tmp)
    if not (tmp.is_dir() or target.is_dir()):
        os.replace(tmp, target)
        return
    old = None
    if target.exists():
        old = temp_sibling(target, "old")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        remove(old)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``target``, on any error it is deleted.

    Parameters
    ----------
    target : path
        The file (or folder, e.g. a zarr store) to produce. Its folder is created if needed.
    overwrite : bool
        False raises :class:`OutputError` when ``target`` already exists.
    """
    target = Path(target).expanduser()
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    try:
        yield tmp
        replace_path(tmp, target)
    except BaseException:
        remove(tmp)
        raise


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Write a small text file atomically (JSON side-cars, reports)."""
    with atomic_output(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(outputs: Iterable[tuple[str, str | os.PathLike | None]],
                  inputs: Iterable[tuple[str, str | os.PathLike | None]], *, overwrite: bool) -> None:
    """Refuse outputs that would destroy data, before any slow work.

    Parameters
    ----------
    outputs, inputs : iterable of (flag, path or None)
        E.g. ``[("--out", "labels.nii.gz")]`` and ``[("IMAGE", "ct.nii.gz"), ("--scribbles", ...)]``;
        None entries are skipped.
    overwrite : bool
        Whether existing outputs may be replaced (they are, only once the new file is complete).

    Raises
    ------
    OutputError
        An output is one of the inputs, two outputs are the same file, an output exists without
        ``overwrite``, its folder is a file or cannot be written.
    """
    ins = [(flag, Path(p).expanduser()) for flag, p in inputs if p is not None]
    seen: dict[Path, str] = {}
    for flag, out in outputs:
        if out is None:
            continue
        out = Path(out).expanduser()
        for in_flag, src in ins:
            if _same(out, src):
                raise OutputError(f"{flag} {out} is the input {in_flag}; writing it would destroy the input. "
                                  "Choose another output file.")
        key = out.resolve()
        if key in seen:
            raise OutputError(f"{flag} {out} is also the output of {seen[key]}; choose different files")
        seen[key] = flag
        if out.exists() and not overwrite:
            raise OutputError(f"{flag} {out} exists; pass --overwrite to replace it (the old file is kept "
                              "until the new one is complete)")
        parent = next((p for p in out.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise OutputError(f"{flag} {out}: {parent} is a file, not a folder")
        if parent is not None:
            _check_writable(parent, flag, out)


def _check_writable(folder: Path, flag: str, out: Path) -> None:
    """Create (and at once delete) a file in ``folder``: read-only or full folders fail now, not after
    minutes of work."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"{flag} {out}: cannot write in {folder} ({exc.strerror or exc}); choose another "
                          "folder") from exc
