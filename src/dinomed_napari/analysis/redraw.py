"""A reached slice's outline moved onto the image's edges by a random walker in a band around it (step 2
of :mod:`.propagate`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .walker import grown_box, touching, walk_plane, walk_planes
from .window import stroke_window

#: Each slice the walk reaches has its outline re-drawn by a 2D random walker within this many pixels on
#: either side of the appearance model's boundary (:func:`redraw_outline`). The model's boundary sits a
#: little inside the structure (smoothed features straddle its edge), and the walk lost about a pixel of
#: rim per slice (CT liver 2,006 -> 1,477 pixels one slice from its annotation, against 1,937 true); the
#: walker puts it on the edge instead. On the shared cases (random ViT-S) mean Dice 0.753 -> 0.782, the
#: 40 untuned organ pairs 0.501 -> 0.550 and the magnified lesions 0.580 -> 0.609. A band of 1 gained
#: less (0.758, window of the annotated slices), 3 too (0.763, organs 0.525); growing outward only, or
#: background fixed where the model's probability is low, flooded or shrank. The walker sees the plane
#: windowed around the region (see :func:`redraw_outline`): unwindowed, CT lost (0.749); windows 2 or 4
#: times wider than the annotated slices' gave 0.764 and 0.757.
EDGE_BAND = 2
#: On CT, a reached slice's outline is redrawn together with the slice the walk came from, as a 3D walker
#: whose other plane is seeded by that slice's mask (inside) and the rest of its box (outside), this many
#: in-plane pixels away (:func:`redraw_outline`): where a wall continues from one slice to the next at the
#: same Hounsfield value, the outline keeps it (the CTA's grey thrombus around the bright lumen, which the
#: step's model leaves out). On the shared cases (random ViT-S) mean Dice 0.7979 -> 0.8029 (CTA aorta
#: k=1 0.65 -> 0.72, CT right kidney k=1 0.70 -> 0.85), the demo's crops 0.8574 / 0.8397 -> 0.8739 /
#: 0.8632 (aorta k=3 0.78 -> 0.89), the 40 untuned organ pairs 0.5626 -> 0.5617 (CT portal vein k=3 0.56
#: -> 0.39). Steps of 0.05 / 0.15 / 0.25 read 0.7997 / 0.8047 / 0.8032 (shared), 0.5608 / 0.5592 / 0.5513
#: (organs, 11 / 12 / 14 pairs over 2x). On MRI, whose intensities drift between slices, the kidneys and
#: spleens shrank (0.25: shared 0.7837, MRI right kidney -0.10 at every k): MRI planes are redrawn alone.
#: 0 redraws every plane alone.
REDRAW_GAP = 0.1


def redraw_outline(plane: np.ndarray, mask: np.ndarray, spacing2=(1.0, 1.0),
                   band: int | None = None, previous=None) -> np.ndarray:
    """``mask``'s outline moved onto the image's edges by a random walker in a band around it.

    Parameters
    ----------
    plane : (H, W) float
        Normalised image (about [0, 1]); the walker sees it windowed around the mask's intensities
        (:func:`stroke_window`).
    mask : (H, W) bool
        A region whose boundary is roughly right (within ``band`` pixels).
    spacing2 : (2,) float
        Pixel spacing of the plane.
    band : int, optional
        Pixels on either side of the boundary the walker may move it by (default ``EDGE_BAND``).
    previous : (plane, mask), optional
        The slice the walk came from and its mask, walked with ``plane`` as a second plane
        ``REDRAW_GAP`` in-plane pixels away, every pixel of it seeded (see ``REDRAW_GAP``).

    Returns
    -------
    (H, W) bool
        The walker's region connected to ``mask`` eroded by ``band`` (its sure core); ``mask`` itself when
        that core is under 3 pixels (too thin to redraw), when the region leaves no background in its
        plane, or when the plane is flat or not finite around it.
    """
    band = EDGE_BAND if band is None else int(band)
    if band < 1 or not mask.any():
        return mask
    box = grown_box(mask, band + 2)
    sub = mask[box]
    core = ndimage.binary_erosion(sub, iterations=band)
    if core.sum() < 3:
        return mask
    seeds = np.zeros(sub.shape, np.int32)
    seeds[~ndimage.binary_dilation(sub, iterations=band)] = 1
    seeds[core] = 2
    if not (seeds == 1).any():
        return mask  # the region fills its plane: no background to walk from
    # Windowed around the region's own intensities (as annotated slices are around their strokes), so a
    # brighter or darker neighbour (bone, air, fat) does not set the scale of the edges. The rim is
    # included: a window from the core alone clips a bright structure's blurred edge and pulls the
    # outline inward (a blurred synthetic tube: Dice 0.88 against 0.92).
    data = stroke_window(plane[box].astype(np.float64), sub)
    if not np.isfinite(data).all() or np.ptp(data) == 0:
        return mask  # no edge to move onto (a flat plane; the walker would divide by its zero spread)
    sp = np.asarray(spacing2, float)
    sp = sp / sp.min()
    both = None
    if previous is not None and REDRAW_GAP > 0:
        # The previous plane windowed as this one is (around its region): one tissue reads the same on both.
        both = stroke_window(np.stack([plane[box], previous[0][box]]).astype(np.float64),
                             np.stack([sub, np.zeros_like(sub)]))
        if not np.isfinite(both[1]).all():
            both = None  # a hole in the previous plane: this one is redrawn alone
    if both is not None:
        before = np.where(previous[1][box], 2, 1).astype(np.int32)
        walk = walk_planes(both, np.stack([seeds, before]), (REDRAW_GAP, *sp))[0]
    else:
        walk = walk_plane(data, seeds, sp)
    out = np.zeros_like(mask)
    out[box] = touching(walk == 2, core)
    return out
