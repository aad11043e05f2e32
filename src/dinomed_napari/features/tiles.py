"""Tiled extraction of planes larger than the network input: tiles with a halo, stitched on the patch grid.

A plane at native pixel size (h x w patches) is covered by tiles of ``t`` patches that overlap by at least
``2 * halo``. Every output patch is taken from the one tile whose *core* owns it: the owned ranges split
each overlap in the middle, so a kept patch is at least ``halo`` patches from its tile's inner border and
sees that much context on every side. Tiles are all the same size (the last ones are shifted back
inside the plane), so they batch together and keep one shape for ``torch.compile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def tile_starts(grid: int, tile: int, halo: int) -> list[int]:
    """Start (in patches) of each tile along one axis of ``grid`` patches; tiles are ``min(tile, grid)``."""
    if grid <= tile:
        return [0]
    core = max(1, tile - 2 * halo)
    n = math.ceil((grid - tile) / core) + 1
    return sorted({round(k * (grid - tile) / (n - 1)) for k in range(n)})


def owned_ranges(starts: list[int], tile: int, grid: int) -> list[tuple[int, int]]:
    """The patch range [lo, hi) each tile contributes: overlaps are split in the middle."""
    tile = min(tile, grid)
    bounds = [0] + [(a + b + tile) // 2 for a, b in zip(starts, starts[1:], strict=False)] + [grid]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


@dataclass(frozen=True)
class TilePlan:
    """How one plane of ``grid`` patches is cut into tiles and stitched back.

    Attributes
    ----------
    grid : (h, w)
        Output patch grid of the plane.
    tile : (th, tw)
        Tile size in patches (the network input is ``tile * patch`` pixels).
    rows, cols : list of (start, lo, hi)
        Per tile row/column: start patch and the owned range [lo, hi).
    patch : int
        Patch size in pixels.
    """

    grid: tuple[int, int]
    tile: tuple[int, int]
    rows: list[tuple[int, int, int]]
    cols: list[tuple[int, int, int]]
    patch: int = 16

    @classmethod
    def build(cls, size: tuple[int, int], tile_px: int, halo_px: int, patch: int = 16) -> TilePlan:
        """Plan for an input of ``size`` pixels (multiples of ``patch``), tiles of ``tile_px`` pixels."""
        grid = (int(size[0]) // patch, int(size[1]) // patch)
        t, m = int(tile_px) // patch, int(halo_px) // patch
        axes = []
        for g in grid:
            starts = tile_starts(g, t, m)
            axes.append([(s, lo, hi) for s, (lo, hi) in zip(starts, owned_ranges(starts, t, g), strict=True)])
        return cls(grid, (min(t, grid[0]), min(t, grid[1])), axes[0], axes[1], patch)

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def cut(self, x):
        """(B, C, H, W) planes -> (B * n_tiles, C, th * patch, tw * patch) tiles, plane by plane."""
        p, (th, tw) = self.patch, self.tile
        return _stack([x[:, :, r * p : (r + th) * p, c * p : (c + tw) * p]
                       for r, _, _ in self.rows for c, _, _ in self.cols], x)

    def stitch(self, feats: np.ndarray) -> np.ndarray:
        """(n_tiles, th, tw, C) tile features of one plane -> (h, w, C) on the plane's patch grid.

        Works on NumPy arrays and on torch tensors (stitched where they are, e.g. on the GPU).
        """
        shape = (*self.grid, feats.shape[-1])
        out = feats.new_empty(shape) if hasattr(feats, "new_empty") else np.empty(shape, dtype=feats.dtype)
        k = 0
        for r, rlo, rhi in self.rows:
            for c, clo, chi in self.cols:
                out[rlo:rhi, clo:chi] = feats[k, rlo - r : rhi - r, clo - c : chi - c]
                k += 1
        return out


def _stack(tiles: list, like):
    import torch

    # (n_tiles, B, C, h, w) -> (B * n_tiles, C, h, w): all tiles of plane 0, then plane 1 ...
    return torch.stack(tiles, dim=1).flatten(0, 1) if isinstance(like, torch.Tensor) else \
        np.stack(tiles, axis=1).reshape(-1, *tiles[0].shape[1:])
