"""Exceptions with messages that say which input, what was found and what was expected."""

import re

_NP_SCALAR = re.compile(r"np\.(?:u?int|float|bool_?|str_)\d*\(([^()]*)\)")


def plain_message(text) -> str:
    """One line without NumPy scalar reprs (``np.int64(3)`` -> ``3``), for users and result tables."""
    return " ".join(_NP_SCALAR.sub(r"\1", str(text)).split())


class DinomedError(Exception):
    """Base class of every error the package raises on purpose."""


class VolumeError(DinomedError, ValueError):
    """An image or label file that cannot be used: unreadable, wrong shape, NaN/inf, constant ..."""


class WeightsError(DinomedError, ValueError):
    """Missing, corrupt or mismatched backbone weights."""


class FeatureMismatchError(DinomedError, ValueError):
    """Features of another model, dimension or grid than what a segmenter was trained on."""


class ScribbleError(DinomedError, ValueError):
    """Scribbles that cannot train a segmenter (one class, none, outside the volume, wrong shape)."""


class ExtractionCancelled(DinomedError):
    """Feature extraction was cancelled; the slices already computed stay in the cache."""


class Cancelled(DinomedError):
    """A long analysis step was cancelled by the user (between steps; nothing half-written)."""


class CacheError(DinomedError):
    """A feature cache that cannot be used: damaged slices that cannot be recomputed, an unwritable folder."""


class OutputError(DinomedError):
    """An output that would destroy data: an input given as ``--out``, an existing file without
    ``--overwrite``, an unsupported suffix."""


def load_failure(exc: BaseException) -> str:
    """``"Type: message"`` of an error reading a user's file, for the error that names the file; numpy's
    and torch's pickle errors advise loading unsafely, which is never done here, so they are reworded."""
    if "pickle" in str(exc).lower():
        return "it holds Python objects (pickle), which are never loaded here: they can run code"
    return f"{type(exc).__name__}: {exc}"
