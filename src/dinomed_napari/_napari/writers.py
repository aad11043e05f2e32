"""npe2 writer: a labels layer saved as NIfTI / TIFF / NRRD on the grid of the image it was drawn on."""

from __future__ import annotations

from typing import Any

import numpy as np

from .layers import grid_volume, to_source_grid


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 single-layer writer for labels.

    The layer's ``metadata['dinomed']`` (copied from the image by the reader and the widgets) gives the
    spacing and affine; :func:`dinomed_napari.io.save_labels` does the writing, so a NIfTI output has
    the source image's header geometry and reloads on the same grid.
    """
    from dinomed_napari.io import save_labels

    labels = to_source_grid(np.asarray(data), attributes.get("metadata", {}))
    like = grid_volume(attributes.get("metadata", {}), labels.shape, attributes.get("scale"))
    return [str(save_labels(path, labels, like))]
