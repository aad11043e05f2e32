"""The scribble segmenter dock's files (:class:`~.widget_segment.SegmentWidget`): save and load a trained
segmenter, export the prediction on the image's grid."""

from __future__ import annotations

import numpy as np

from .layers import layer_array, layer_volume, to_source_grid
from .results import find_result


class SegmenterFiles:
    """The Save / Load / Export buttons of :class:`~.widget_segment.SegmentWidget` (its ``seg_file`` and
    ``export_file`` fields, requests and jobs)."""

    def save(self) -> None:
        """Write the trained segmenter (npz + JSON, no pickle) to the chosen file."""
        from dinomed_napari.analysis.persist import save_segmenter

        try:
            session = self.session()
            if session.segmenter is None:
                raise ValueError("nothing to save: paint scribbles of two classes first")
            path = save_segmenter(session.segmenter, self.seg_file.value)
        except Exception as exc:  # unwritable path, untrained segmenter
            self.fail(exc, "save segmenter")
            return
        self.say(f"segmenter saved to {path}")

    def load(self) -> None:
        """Load a segmenter file and predict the current slice with this image's features."""
        from dinomed_napari.analysis.persist import load_segmenter

        try:
            seg = load_segmenter(self.seg_file.value)
            tri = len(seg.models) > 1
            image, session, req = self._base_request(None, triplanar=tri)
            seg.check_features(req.features)
            req.settings = (seg.kind, seg.intensity, tri)
            session.segmenter, session.segmenter_settings = seg, req.settings
            req.segmenter, req.segmenter_settings = seg, req.settings
            req.image, req.new_image = layer_array(image), True
        except Exception as exc:  # missing file, other model/weights (FeatureMismatchError)
            self.fail(exc, "load segmenter")
            return
        self.say(f"segmenter loaded from {self.seg_file.value}")
        self._submit(image, session, req, volume=False)

    def export(self) -> None:
        """Save the prediction layer on the image's grid (NIfTI / NRRD / TIFF by suffix)."""
        from dinomed_napari.io import save_labels

        try:
            image = self.image_layer()
            layer = find_result(self.viewer, image, "prediction")
            if layer is None:
                raise ValueError("no prediction to export: paint scribbles, then 'Predict volume'")
            labels = to_source_grid(np.asarray(layer.data), image.metadata)
            path = save_labels(self.export_file.value, labels, layer_volume(image))
        except Exception as exc:  # bad path / suffix / shape
            self.fail(exc, "export labels")
            return
        self.say(f"labels written to {path}")
