"""Measure a light 3D convolutional head on the stacked slice features against the default walk.

Issue 8 lists, beside propagation and a random walker, "a small 3D convolutional head trained in seconds
on the stacked slice features" (the paper's own protocol: frozen slice features stacked into a pseudo-3D
volume under a light 3D decoder). This trains one per few-click pair of a fewclick3d config and prints its
Dice on the unannotated slices next to the default's (the walk), on the same strokes and features
(random ViT-S at 512, cached in ``--keep`` as ``sweep_walk.py`` does).

The head: the features reduced by PCA to ``--dims`` channels plus the image pooled onto the patch grid,
then conv 1x3x3 -> conv 3x1x1 (one slice of context each way) -> conv 1x1x1 to two classes; class-balanced
cross-entropy, Adam, ``--steps`` steps on the whole volume. Two targets:

- ``strokes``: the painted cells only (what the user gave);
- ``outlines``: every cell of the annotated slices, labelled by the default's annotated outlines
  (:func:`dinomed_napari.analysis.propagate.annotated_masks`), so the head learns the structure against
  everything else on those slices.

Its probability is upsampled to the voxels, thresholded at 0.5, and kept where connected to the
structure's strokes (the filter-bank baseline's clean-up). Run::

    .venv/bin/python benchmarks/measure_head3d.py benchmarks/fewclick3d_shared.yaml --keep /tmp/sweep_keep

The last line reads ``head3d: N pairs, default D, strokes S, outlines O``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def grid_stack(fv, image: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """(C, Z, h, w) float32: PCA of the features to ``dims`` channels and the pooled image, standardised."""
    from skimage.transform import resize
    from sklearn.decomposition import PCA

    data = np.asarray(fv.data, np.float32)
    z, h, w, c = data.shape
    flat = data.reshape(-1, c)
    rng = np.random.default_rng(seed)
    pca = PCA(dims, random_state=seed).fit(flat[rng.choice(len(flat), min(len(flat), 20_000), replace=False)])
    reduced = pca.transform(flat).reshape(z, h, w, dims)
    pooled = resize(np.asarray(image, np.float32), (z, h, w), order=1, anti_aliasing=True)
    stack = np.concatenate([reduced, pooled[..., None]], axis=-1)
    stack = (stack - stack.mean(axis=(0, 1, 2))) / (stack.std(axis=(0, 1, 2)) + 1e-6)
    return np.ascontiguousarray(np.moveaxis(stack, -1, 0), dtype=np.float32)


def to_grid(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(Z, Y, X) bool -> (Z, h, w) fraction of each patch cell covered."""
    z, y, x = mask.shape
    h, w = grid
    rows = np.minimum((np.arange(y) * h) // y, h - 1)
    cols = np.minimum((np.arange(x) * w) // x, w - 1)
    out = np.zeros((z, h, w), np.float32)
    counts = np.zeros((h, w), np.float32)
    np.add.at(counts, (rows[:, None], cols[None, :]), 1.0)
    for s in np.flatnonzero(mask.any(axis=(1, 2))):
        acc = np.zeros((h, w), np.float32)
        np.add.at(acc, (rows[:, None], cols[None, :]), mask[s].astype(np.float32))
        out[s] = acc / counts
    return out


def train_head(x: np.ndarray, target: np.ndarray, steps: int, seed: int):
    """A 1x3x3 / 3x1x1 / 1x1x1 conv head fitted to ``target`` (Z, h, w): 0 unlabelled, 1 bg, 2 fg."""
    import torch

    torch.manual_seed(seed)
    c = x.shape[0]
    head = torch.nn.Sequential(
        torch.nn.Conv3d(c, 32, (1, 3, 3), padding=(0, 1, 1)), torch.nn.ReLU(),
        torch.nn.Conv3d(32, 32, (3, 1, 1), padding=(1, 0, 0)), torch.nn.ReLU(),
        torch.nn.Conv3d(32, 2, 1))
    xt = torch.from_numpy(x)[None]
    t = torch.from_numpy(target.astype(np.int64))
    known = t > 0
    counts = torch.bincount(t[known] - 1, minlength=2).float().clamp(min=1)
    weight = counts.sum() / (2 * counts)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        logits = head(xt)[0]  # (2, Z, h, w)
        loss = torch.nn.functional.cross_entropy(logits[:, known].T, t[known] - 1, weight=weight)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return torch.softmax(head(xt)[0], dim=0)[1].numpy()


def upsample(prob: np.ndarray, shape) -> np.ndarray:
    """(Z, h, w) -> (Z, Y, X) bilinear, plane by plane."""
    from dinomed_napari.features.grid import upsample_patches

    return upsample_patches(prob[..., None], tuple(shape[1:]))[..., 0]


def main(argv=None) -> int:
    from sweep_walk import default_pairs

    from dinomed_napari.analysis.annotated import annotated_masks
    from dinomed_napari.analysis.cleanup import clean_labels
    from dinomed_napari.analysis.sampling import normalise_image
    from dinomed_napari.bench.protocols.fewclick3d import score_row

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="a bench config with fewclick3d cases (e.g. fewclick3d_shared.yaml)")
    p.add_argument("--keep", default="/tmp/dinomed_sweep_walk", help="folder keeping each case's features")
    p.add_argument("--dims", type=int, default=24, help="PCA channels of the features (default 24)")
    p.add_argument("--steps", type=int, default=150, help="Adam steps (default 150)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    rows = {"default": [], "strokes": [], "outlines": []}
    seconds = []
    inputs = {}  # per case: its normalised image and the head's input stack
    for lc, fv, seg, k, lab, truth, scr, pred in default_pairs(Path(args.config), keep, args.seed):
        if lc.case.name not in inputs:
            norm = np.asarray(normalise_image(np.asarray(lc.volume.data, np.float32))[0], np.float32)
            inputs = {lc.case.name: (norm, grid_stack(fv, norm, args.dims, args.seed))}
        norm, x = inputs[lc.case.name]
        out = {"default": pred}
        fg, bg = to_grid(scr.labels == 2, fv.grid), to_grid(scr.labels == 1, fv.grid)
        strokes = np.where(fg > 0, 2, np.where(bg > 0, 1, 0))
        outline = np.zeros(truth.shape, bool)
        for s in scr.slices:
            outline[s] = annotated_masks(norm[s], scr.labels[s], lc.spacing[1:], 1,
                                         hounsfield=seg.hounsfield).get(2, outline[s])
        cover = to_grid(outline, fv.grid)
        outlines = np.zeros(cover.shape, np.int64)
        outlines[list(scr.slices)] = np.where(cover[list(scr.slices)] >= 0.5, 2, 1)
        for name, target in (("strokes", strokes), ("outlines", outlines)):
            t0 = time.perf_counter()
            prob = upsample(train_head(x, target, args.steps, args.seed), truth.shape)
            seconds.append(time.perf_counter() - t0)
            lab_vol = np.where(prob > 0.5, 2, 1).astype(np.uint8)
            out[name] = clean_labels(lab_vol, scr.labels) == 2
        line = []
        for name, m in out.items():
            row = score_row(m, truth, lc, scr.slices, 0, name, lab, k, 0.0)
            rows[name].append(row["dice"])
            line.append(f"{name} {row['dice']:.3f} ({row['volume_ratio']:.2f}x)")
        print(f"{lc.case.name} label {lab} k={len(scr.slices)}: " + ", ".join(line), flush=True)
    print(f"head fit + predict: median {np.median(seconds):.1f} s")
    print(f"head3d: {len(rows['default'])} pairs, default {np.mean(rows['default']):.4f}, "
          f"strokes {np.mean(rows['strokes']):.4f}, outlines {np.mean(rows['outlines']):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
