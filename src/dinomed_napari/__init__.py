"""dinomed-napari: DINOv3 features for fast annotation of medical and EM volumes.

The core (``io``, ``preprocess``, ``models``, ``features``, ``analysis``, ``bench``) has no Qt
dependency; the napari layer lives in ``dinomed_napari._napari`` and only wraps core calls.
"""

__version__ = "0.1.0"
