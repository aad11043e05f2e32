"""A volume labelled by its look (no structure followed in 3D, e.g. EM): the classifier's probabilities
blended, plane by plane, with those of the scribbles' filter-bank forest (ilastik's recipe)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import Cancelled

#: The forest's share of a texture volume's probability (the classifier has the rest). On EM cell
#: interiors (``benchmarks/bench_em_fewclick.py``, 48 draws, random ViT-S) the classifier alone read
#: 0.836 / 0.807 / 0.696 (crop at 128 / 64 px, 352 crop at 224) and the forest alone 0.924 / 0.924 /
#: 0.768; shares 0.25 / 0.5 / 0.75 read 0.847 / 0.879 / 0.923 at 128 px, 0.821 / 0.866 / 0.923 at 64 and
#: 0.706 / 0.732 / 0.775 at 224. Random features add little on EM; DINOv3's may earn a larger share.
#: The cost: the forest's pass, about 0.35 s per 512 x 512 plane on a 2-core CPU (35 s for 100 planes,
#: against about a second for the classifier alone); ``forest_prior=False`` or ``spatial="none"`` skip it.
FOREST_SHARE = 0.75


def blend_forest(proba: np.ndarray, classes: Sequence[int], forest: Callable[[int, int], np.ndarray],
                 axis: int, share: float = FOREST_SHARE, cancel=None, progress=None) -> np.ndarray:
    """Blend the forest's class probabilities into ``proba``, in place, plane by plane along ``axis``.

    Parameters
    ----------
    proba : (Z, Y, X, K) float array
        The classifier's probabilities, classes in ``classes`` order.
    classes : sequence of int
        Class values of ``proba``'s last axis.
    forest : callable
        ``forest(index, cls)`` -> (H, W, 1) probability of ``cls`` on plane ``index`` along ``axis``.
    axis : int
        The forest's slicing axis.
    share : float
        The forest's share, in [0, 1].
    cancel, progress : callable, optional
        ``cancel()`` checked before each plane (raises :class:`Cancelled`); ``progress(done, total)`` after.

    Returns
    -------
    (Z, Y, X, K) array
        ``proba``, blended.
    """
    planes = np.moveaxis(proba, axis, 0)  # a view: planes are written in place
    n = planes.shape[0]
    for s in range(n):
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled after {s} of {n} slices")
        theirs = np.concatenate([forest(s, int(c)) for c in classes], axis=-1)
        planes[s] = (1.0 - share) * planes[s] + share * theirs
        if progress is not None:
            progress(s + 1, n)
    return proba
