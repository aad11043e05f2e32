"""Exceptions with messages that say which input, what was found and what was expected."""


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
