"""Few-click segmentation: a classifier on DINOv3 patch features (and pixel filters) from scribbles, and
the painted structures followed through the volume from their annotated slices (:mod:`.propagate`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FeatureMismatchError, ScribbleError, VolumeError
from ..features.grid import slice_of
from ..features.volume import FeatureVolume
from ..io.validate import integer_labels
from ..windows import hounsfield_like
from .annotated import PREVIEW_PIXELS, annotated_masks, several_regions
from .classifiers import make_classifier, softmax
from .cleanup import clean_labels
from .cover import MAX_COVER, background_like, cover
from .fusion import PixelTerm, axis_scores, fuse
from .propagate import Propagation, propagate
from .sampling import (
    SampleCache,
    check_points,
    normalise_image,
    sample_features,
    sample_pixel_features,
)
from .strokes import layout
from .texture import FOREST_SHARE, blend_forest
from .walker import box_inside

#: Forest-probability planes kept for propagation (it reads each as a target, then as a source of
#: the next step on each front): memory stays a few planes, not the volume.
KEEP_PLANES = 8


@dataclass
class Segmentation:
    """``labels`` (the scribbles' class values), ``probabilities`` (..., K) in ``classes`` order (the
    classifier's, with ``forest_share`` of the scribbles' forest's blended in for a texture volume), and
    for 3D propagation its per-slice ``confidence`` and suggested next slice."""

    labels: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray
    propagation: Propagation | None = None
    forest_share: float = 0.0

    @property
    def suggested_slice(self) -> int | None:
        """Slice to annotate next (:meth:`.propagate.Propagation.suggest`), or None."""
        return self.propagation.suggest() if self.propagation is not None else None


def feature_signature(fv: FeatureVolume) -> dict:
    """What features must share to be used with the same classifier."""
    return {"model": fv.model, "weights": fv.weights, "dim": fv.dim,
            "layers": list(fv.layers) if fv.layers is not None else None}


def as_feature_dict(features) -> dict[int, FeatureVolume]:
    """A FeatureVolume or a dict axis -> FeatureVolume (tri-planar), checked to describe one volume."""
    fvs = {features.axis: features} if isinstance(features, FeatureVolume) else dict(features)
    if not fvs:
        raise FeatureMismatchError("no feature volumes given")
    shapes = {tuple(fv.volume_shape) for fv in fvs.values()}
    sigs = [feature_signature(fv) for fv in fvs.values()]
    if len(shapes) > 1 or any(s != sigs[0] for s in sigs):
        raise FeatureMismatchError(f"tri-planar passes disagree: volume shapes {sorted(shapes)}, "
                                   f"features {sigs}")
    return dict(sorted(fvs.items()))


def keeps_voxels(flat_before: np.ndarray, values_before: np.ndarray, flat: np.ndarray,
                 values: np.ndarray) -> bool:
    """Whether scribbled voxels ``flat`` (sorted flat indices) with classes ``values`` keep every voxel of
    ``flat_before`` with its class ``values_before``: strokes were only added."""
    if len(flat_before) > len(flat):
        return False
    if len(flat_before) == 0:
        return True
    pos = np.minimum(np.searchsorted(flat, flat_before), len(flat) - 1)
    return bool(np.array_equal(flat[pos], flat_before) and np.array_equal(values[pos], values_before))


def scribble_points(scribbles, volume_shape) -> tuple[np.ndarray, np.ndarray]:
    """(flat voxel index sorted, class values) from a label volume or a ``(points_zyx, values)`` pair."""
    if isinstance(scribbles, tuple):
        pts = np.rint(check_points(scribbles[0], volume_shape)).astype(np.int64)
        values = integer_labels(np.asarray(scribbles[1]).reshape(-1), "scribble values", ScribbleError)
        if len(values) != len(pts):
            raise ScribbleError(f"{len(pts)} scribble points but {len(values)} values")
        flat = np.ravel_multi_index(pts.T, volume_shape)
        flat, first = np.unique(flat, return_index=True)
        values = values[first]
        keep = values > 0
        return flat[keep], values[keep].astype(np.int64)
    arr = np.asarray(scribbles)
    if arr.dtype.kind == "f":  # labels saved as float: whole numbers only (1.5 is no class)
        arr = integer_labels(arr, "scribbles", ScribbleError)
    if arr.shape != tuple(volume_shape):
        raise ScribbleError(f"scribbles have shape {arr.shape} but the image/features are "
                            f"{tuple(volume_shape)} "
                            "(Z, Y, X): paint them on the same grid as the image")
    if arr.size and arr.min() < 0:
        raise ScribbleError(f"scribble values must be >= 0 (0 = unlabelled), found {arr.min()}")
    flat = np.flatnonzero(arr)
    return flat, arr.ravel()[flat].astype(np.int64)


class ScribbleSegmenter:
    """Train on scribbles, predict a slice or the whole volume.

    Parameters
    ----------
    classifier : {"linear", "rf"}
        Class-balanced logistic regression (fast, predicted on the patch grid) or random forest
        (predicted on upsampled pixel features, slower).
    intensity : {None, "raw", "filters"}
        Also use pixel-level image features at the scribbled voxels: the normalised intensity, or
        skimage multiscale filters (the CLI's and widget's default). Needs ``image`` in :meth:`fit`.
    spatial : {"auto", "propagate", "none"}
        Whole-volume result: "propagate" segments each painted structure on its annotated slices and
        follows it slice by slice (:func:`.propagate.propagate`; needs ``image`` and the scribbles as a
        label volume in :meth:`fit`); "none" labels every voxel by the classifier alone; "auto"
        (default) propagates when fit() got both and the strokes describe structures (each class's
        strokes sit in a small part of each annotated slice, inside one outlined region, and the class
        covers at most half of a slice it is painted on: :mod:`.cover`), else uses the classifier
        (``Segmentation.propagation`` is then None): strokes in several cells or over a texture, as in
        EM, describe a class by its look.
    forest_prior : bool
        With propagation, also train a random forest on multiscale filters (ilastik's recipe,
        :class:`.filterbank.FilterBankRF`) on the same scribbles; its probability is one more input of the
        slice-to-slice model, which learns on each slice how far to trust it. Under ``spatial="auto"``, a
        whole volume not followed in 3D (a texture) blends the forest's probability into the
        classifier's (:mod:`.texture`); single-slice previews stay the classifier's.
    cleanup : bool
        On whole-volume predictions, keep per class only the 3D components touching one of its scribbles.
    fill_holes, min_size
        Further clean-up (see :func:`clean_labels`).
    seed : int
    **options
        Passed to the classifier (``C`` for linear; ``n_estimators``, ``max_depth`` for rf).
    """

    def __init__(self, classifier: str = "linear", intensity: str | None = None,
                 spatial: str = "auto", forest_prior: bool = True, cleanup: bool = False,
                 fill_holes: bool = False, min_size: int = 0, seed: int = 0, **options):
        if spatial not in ("auto", "propagate", "none"):
            raise ValueError(f"spatial must be 'auto', 'propagate' or 'none', got {spatial!r}")
        self.spatial, self.spacing, self.forest_prior = spatial, None, forest_prior
        self._bank = None
        self._layout: tuple = (None, (0, False, 0))
        self.kind, self.intensity, self.cleanup = classifier, intensity, cleanup
        self.fill_holes, self.min_size, self.seed, self.options = fill_holes, min_size, seed, options
        self.models: dict[int, object] = {}
        self.features: dict[int, FeatureVolume] = {}
        self.signature: dict = {}
        self.settings: dict = {}
        self.image = None
        self.image_range: tuple[float, float] | None = None
        self._raw_image = None
        self.hounsfield = False  # the image is CT in HU (set with the image)
        self.n_dino = 0
        self.scribbles = None
        self.samples: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._caches: dict[int, SampleCache] = {}
        self._last_fit: tuple | None = None  # (features and image, scribbled voxels, their classes)
        self._pixel: dict[int, PixelTerm] = {}
        self._volume_scores: dict[int, np.ndarray] = {}

    @property
    def classes_(self) -> np.ndarray:
        return next(iter(self.models.values())).classes_ if self.models else np.zeros(0, int)

    def fit(self, features, scribbles, image: np.ndarray | None = None,
            spacing=None) -> ScribbleSegmenter:
        """Fit one classifier per pass from the scribbled voxels.

        Parameters
        ----------
        features : FeatureVolume or dict axis -> FeatureVolume
            A dict with several axes enables tri-planar fusion.
        scribbles : (Z, Y, X) int array or (points_zyx (N, 3), values (N,))
            0 = unlabelled, 1..K = classes; at least two classes.
        image : (Z, Y, X) array, optional
            Raw image, needed when ``intensity`` is set and for ``spatial="propagate"``.
        spacing : (3,) float, optional
            Voxel spacing (z, y, x) for propagation (default isotropic).
        """
        fvs = as_feature_dict(features)
        first = next(iter(fvs.values()))
        shape = tuple(first.volume_shape)
        flat, values = scribble_points(scribbles, shape)
        classes, counts = np.unique(values, return_counts=True)
        if len(classes) == 0:
            raise ScribbleError("no scribbles: paint at least two classes (e.g. structure and background)")
        if len(classes) < 2:
            raise ScribbleError(f"scribbles contain only class {classes[0]} ({counts[0]} voxels): paint at "
                                "least one other class, e.g. the background")
        self._set_image(image, shape)
        if spacing is not None:
            sp = np.asarray(spacing, dtype=float).ravel()
            if sp.size != 3 or not (np.isfinite(sp).all() and (sp > 0).all()):
                raise VolumeError(f"spacing {tuple(np.ravel(spacing).tolist())}: expected three positive, "
                                  "finite voxel sizes (z, y, x)")
            self.spacing = tuple(float(v) for v in sp)
        self.features, self.signature = fvs, feature_signature(first)
        self.settings = {"resolution": first.resolution, "prep": first.extra.get("prep"), "key": first.key}
        self.scribbles = scribbles if not isinstance(scribbles, tuple) else None
        # Background class and "strokes outline a structure", from the scribbled voxels (no rescan later).
        self._layout = (id(self.scribbles), layout(flat, values, shape, next(iter(fvs))))
        if self.spatial == "propagate" and self.scribbles is None:
            raise ScribbleError("spatial='propagate' needs the scribbles as a (Z, Y, X) label volume, "
                                "not points")
        self._volume_scores.clear()
        sources = {axis: (id(fv.data), fv.key, shape) for axis, fv in fvs.items()}
        inputs = (sources, id(self._raw_image))
        # A refit starts from the last solution only when it adds strokes to the same scribbles: the
        # solver stops early there, and from another structure's solution it would stop elsewhere.
        extends = self._last_fit is not None and self._last_fit[0] == inputs and \
            keeps_voxels(self._last_fit[1], self._last_fit[2], flat, values)
        for axis, fv in fvs.items():
            source = sources[axis]
            if axis not in self._caches or self._caches[axis].source != source:
                self._caches[axis] = SampleCache(source)  # other features: cached samples are stale
            X, row_flat = self._caches[axis].update(flat, lambda new, fv=fv: sample_features(
                fv, np.stack(np.unravel_index(new, shape), 1)))
            y = values[np.searchsorted(flat, row_flat)]
            self.n_dino = X.shape[1]
            if self.intensity:
                pts = np.stack(np.unravel_index(row_flat, shape), axis=1)
                pix = sample_pixel_features(self.image, pts, axis, self.intensity,
                                            self._pixel_term(axis).cache)
                X = np.concatenate([X, pix], axis=1)
            model = self.models.get(axis)
            if model is None or model.linear != (self.kind == "linear") or not extends:
                model = make_classifier(self.kind, seed=self.seed, **self.options)
            self.models[axis] = model.fit(X, y)
            self.samples[axis] = (X, y)
        self._last_fit = (inputs, flat, values)
        return self

    def _set_image(self, image, shape) -> None:
        if image is None:
            if self.intensity or self.spatial == "propagate":
                what = f"intensity={self.intensity!r}" if self.intensity else f"spatial={self.spatial!r}"
                raise VolumeError(f"{what} needs the image: pass image= to fit()")
            return
        if tuple(np.shape(image)) != shape:
            raise VolumeError(f"image has shape {np.shape(image)} but the features describe {shape} "
                              "(Z, Y, X)")
        if image is not self._raw_image:  # new image: normalise once, drop cached pixel features
            from dinomed_napari.io.lazy import all_finite

            if not all_finite(image):  # the pixel filters and the walk would fail far from the cause
                raise VolumeError(f"the image of shape {shape} holds NaN/inf values; expected finite "
                                  "intensities (replace them, e.g. np.nan_to_num)")
            self._use_image(image, (None, None))

    def _use_image(self, image, rng: tuple) -> None:
        """Normalise ``image`` (by ``rng``, else its own percentiles), drop cached pixel features and note
        whether it is CT in Hounsfield units (propagation windows its annotated slices then)."""
        self.image, lo, hi = normalise_image(image, *rng)
        self._raw_image, self.image_range = image, (lo, hi)
        self._pixel.clear()
        sample = np.asarray(image[:: max(1, np.shape(image)[0] // 16)])  # the planes normalise_image reads
        self.hounsfield = hounsfield_like(float(sample.min()), lo, hi)

    def _pixel_term(self, axis: int) -> PixelTerm | None:
        if not self.intensity:
            return None
        if axis not in self._pixel:
            self._pixel[axis] = PixelTerm(self.image, axis, self.intensity)
        return self._pixel[axis]

    def check_features(self, features) -> dict[int, FeatureVolume]:
        """Features usable with this trained segmenter, else FeatureMismatchError naming both."""
        fvs = as_feature_dict(features)
        for axis, fv in fvs.items():
            if feature_signature(fv) != self.signature:
                raise FeatureMismatchError(f"segmenter trained on {self.signature} cannot use features "
                                           f"{feature_signature(fv)} (axis {axis}): extract with the same "
                                           "model, weights and layers")
        missing = set(self.models) - set(fvs)
        if missing:
            raise FeatureMismatchError(f"segmenter has tri-planar passes {sorted(self.models)}, "
                                       f"features only {sorted(fvs)}")
        return fvs

    def _adopt(self, features, image) -> None:
        """Use new features / a new image for prediction (checked against what was trained)."""
        if features is not None:
            fvs = self.check_features(features)
            if fvs is not self.features:
                self.features, self._volume_scores = fvs, {}
        if image is not None and (self.intensity or self.spatial != "none") and image is not self._raw_image:
            self._use_image(image, self.image_range or (None, None))

    def logits(self, index: int | None = None, axis: int | None = None, features=None,
               image: np.ndarray | None = None) -> np.ndarray:
        """Fused class scores: (H, W, K) of slice ``index`` along ``axis``, or (Z, Y, X, K)."""
        if not self.models:
            raise ScribbleError("segmenter is not trained: call fit() with scribbles first")
        self._adopt(features, image)
        if self.intensity and self.image is None:
            raise VolumeError(f"intensity={self.intensity!r}: pass the image (image=) to predict")
        if not self.features:
            raise FeatureMismatchError("no features: pass features= (this segmenter was loaded from a file)")
        axis = next(iter(self.features)) if axis is None else axis
        scores = []
        for a, fv in self.features.items():
            if index is not None and a == axis:
                scores.append(axis_scores(fv, self.models[a], self.n_dino, self._pixel_term(a), index))
                continue
            if a not in self._volume_scores:  # other passes of a tri-planar slice: reuse until the next fit
                self._volume_scores[a] = axis_scores(fv, self.models[a], self.n_dino, self._pixel_term(a),
                                                     None)
            vol = self._volume_scores[a]
            scores.append(vol if index is None else slice_of(vol, axis, index))
        if index is None:
            self._volume_scores.clear()  # a whole volume is not kept: memory
        return fuse(scores)

    def predict(self, index: int | None = None, axis: int | None = None, features=None,
                image: np.ndarray | None = None, cancel=None,
                probabilities: bool | None = None, progress=None) -> Segmentation:
        """Labels and per-class probabilities of slice ``index`` (along ``axis``) or of the whole volume.

        With 3D propagation (see ``spatial``) the whole-volume labels follow the painted structures from
        their annotated slices (``propagation`` holds the per-slice confidence and the suggested next
        slice), and an annotated slice's preview is its outline from the scribbles. ``probabilities`` are
        the classifier's (blended with the scribbles' forest's for a texture volume, see
        ``forest_prior``); for a propagated volume they are computed only when asked for
        (``probabilities=True``: a whole-volume pass of the classifier), else None. ``cancel()`` is
        checked between slices of the propagation, ``progress(done, total)`` called after each.
        Clean-up options run on whole volumes only.
        """
        if not self.models:
            raise ScribbleError("segmenter is not trained: call fit() with scribbles first")
        self._adopt(features, image)
        propagating = self._can_propagate()
        # The walk goes along the axis the strokes were painted on, whichever the features' axis.
        scr_axis = self._stroke_layout()[2] if propagating and axis is None else axis
        prop = extra = None
        if propagating and index is None:  # None: several objects per class (see spatial="auto")
            extra = self._forest_prior(scr_axis)
            if self.spatial == "auto" and self._background_like(scr_axis, extra) is not None:
                propagating = False  # a class covering most of its slices: the classifier's (cover.py)
            else:
                prop = propagate(self.image, self.scribbles, self.spacing or (1.0, 1.0, 1.0),
                                 axis=scr_axis, background=self._background(),
                                 proba=lambda s: self._structure_proba(s, scr_axis),
                                 cell=self._cell(scr_axis), cancel=cancel, extra=extra, progress=progress,
                                 one_object=self.spatial == "auto", hounsfield=self.hounsfield)
        # The classifier's pass is needed for its labels (no propagated volume, or a preview) or when
        # asked for.
        proba = softmax(self.logits(index, axis)) if probabilities or prop is None else None
        share = 0.0
        if prop is None and index is None and self._blends():  # a texture: the forest has a share
            f_axis = next(iter(self.features))
            forest = extra if extra is not None and scr_axis == f_axis else self._forest_prior(f_axis)
            proba = blend_forest(proba, self.classes_, forest, f_axis, cancel=cancel, progress=progress)
            share = FOREST_SHARE
        classes = self.classes_
        dtype = np.uint8 if classes.max() < 256 else np.int32
        if prop is not None:
            labels = prop.labels.astype(dtype, copy=False)
        else:
            labels = classes[np.argmax(proba, axis=-1)].astype(dtype)
            if propagating and index is not None:
                labels = self._annotated_preview(index, scr_axis, labels, proba)
        if index is None and (self.cleanup or self.fill_holes or self.min_size):
            labels = clean_labels(labels, self.scribbles if self.cleanup else None,
                                  fill_holes=self.fill_holes, min_size=self.min_size)
        return Segmentation(labels=labels, probabilities=proba, classes=classes, propagation=prop,
                            forest_share=share)

    def _blends(self) -> bool:
        """Whether a volume not followed in 3D blends in the scribbles' forest (``spatial="auto"`` with
        the forest on, the image and a scribble volume: :mod:`.texture`)."""
        return (self.spatial == "auto" and self.forest_prior and self.image is not None
                and self.scribbles is not None and np.shape(self.scribbles) == np.shape(self.image))

    def _can_propagate(self) -> bool:
        if self.spatial == "none" or self.scribbles is None or self.image is None or not self.features:
            return False
        if np.shape(self.scribbles) != np.shape(self.image):
            return False
        # "auto": follow structures (localised strokes), not textures painted all over the planes.
        return self.spatial == "propagate" or self._stroke_layout()[1]

    def _stroke_layout(self) -> tuple[int, bool, int]:
        """(background, localised, axis painted along) of the current scribbles (:func:`layout`): from
        fit(), or computed once when the scribbles were set otherwise (a loaded segmenter given them)."""
        if self._layout[0] != id(self.scribbles):
            scr = np.asarray(self.scribbles)
            flat = np.flatnonzero(scr)
            self._layout = (id(self.scribbles),
                            layout(flat, scr.ravel()[flat], scr.shape, next(iter(self.features))))
        return self._layout[1]

    def _background(self) -> int:
        return self._stroke_layout()[0]

    def _background_like(self, axis: int, forest) -> int | None:
        """A painted class covering most of a slice it is painted on (:func:`.cover.background_like`)."""
        def labels(index: int) -> np.ndarray:
            return self.classes_[np.argmax(self.logits(index, axis), axis=-1)]

        return background_like(self.scribbles, axis, self._background(), labels,
                               None if forest is None else (lambda s, c: forest(s, c)[..., 0]))

    def _forest_prior(self, axis: int):
        """``extra(index, cls)`` for :func:`propagate`: the filter-bank forest's probability of ``cls``."""
        if not self.forest_prior:
            return None
        from .filterbank import FilterBankRF

        key = (id(self.image), axis)
        if self._bank is None or self._bank[0] != key:  # filters depend on the image only: kept
            self._bank = (key, FilterBankRF(self.image, axis=axis, clip=(0.0, 1.0)))
        bank = self._bank[1].fit(np.asarray(self.scribbles), seed=self.seed)
        classes = list(bank.clf.classes_)
        planes: dict[int, tuple[tuple[slice, slice] | None, np.ndarray]] = {}

        def extra(index: int, cls: int, box: tuple[slice, slice] | None = None) -> np.ndarray:
            known = planes.get(index)
            if known is None or not _covers(known[0], box):
                if known is not None and box is not None:
                    box = _union(known[0], box)  # what an earlier caller used stays valid
                proba = bank.plane_proba(index, box)
                if box is not None:  # the forest runs on the box only; zero elsewhere, never read
                    plane = np.delete(self.image.shape, axis).tolist()
                    full = np.zeros(plane + [proba.shape[-1]], np.float32)
                    full[box] = proba
                    proba = full
                planes[index] = known = (box, proba)
                while len(planes) > KEEP_PLANES:  # propagation reads a plane as target, then source
                    del planes[next(iter(planes))]
            return known[1][..., [classes.index(cls)]]

        return extra

    def _cell(self, axis: int) -> float:
        """Pixels per feature-grid cell on planes along ``axis`` (the classifier map's resolution)."""
        fv = self.features.get(axis) or next(iter(self.features.values()))
        return float(np.mean(np.divide(fv.plane_shape, fv.grid)))

    def _structure_proba(self, index: int, axis: int) -> np.ndarray:
        """(H, W, K-1) classifier probabilities of the non-background classes on one plane."""
        proba = softmax(self.logits(index, axis))
        keep = self.classes_ != self._background()
        return proba[..., keep]

    def _annotated_preview(self, index: int, axis: int, labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """An annotated plane shows the structures' outlines from its scribbles (what propagation starts
        from); other planes show the classifier."""
        scr = slice_of(np.asarray(self.scribbles), axis, index)
        bg = self._background()
        if not np.any((scr > 0) & (scr != bg)):
            return labels
        spacing = np.delete(np.asarray(self.spacing or (1.0, 1.0, 1.0)), axis)
        keep = self.classes_ != bg
        out = np.full(labels.shape, bg, labels.dtype)
        for c, mask in annotated_masks(slice_of(self.image, axis, index), scr, spacing, bg,
                                       proba[..., keep], max_pixels=PREVIEW_PIXELS,
                                       cell=self._cell(axis), hounsfield=self.hounsfield,
                                       classes=self.classes_[keep]).items():
            if self.spatial == "auto" and (several_regions(mask) or cover(labels, c) > MAX_COVER):
                return labels  # several objects, or most of the slice: the classifier's (see predict)
            out[mask] = c
        return out


def _covers(outer: tuple[slice, slice] | None, inner: tuple[slice, slice] | None) -> bool:
    """Whether box ``outer`` (None: the whole plane) contains box ``inner``."""
    return outer is None or (inner is not None and box_inside(inner, outer))


def _union(a: tuple[slice, slice] | None, b: tuple[slice, slice]) -> tuple[slice, slice] | None:
    """The smallest box containing both (None: the whole plane)."""
    if a is None:
        return None
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True))
