"""Volume I/O: every reader returns a (Z, Y, X) `Volume`; `save_labels` writes labels on its grid."""

from dinomed_napari.io.load import load_volume
from dinomed_napari.io.validate import check_image_volume
from dinomed_napari.io.volume import Volume
from dinomed_napari.io.write import save_labels

__all__ = ["Volume", "check_image_volume", "load_volume", "save_labels"]
