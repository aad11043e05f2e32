"""A backbone without a network: the host side of extraction can be measured and tested on its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dinomed_napari.models.registry import IMAGENET_MEAN_STD, BackboneSpec, resolve_spec


class StandInBackbone:
    """Same interface as :class:`~dinomed_napari.models.backbone.Backbone`, but no ViT.

    Parameters
    ----------
    model : str
        Registry name whose dims (embed dim, depth, patch) the output takes, e.g. "S" for 384 channels.
    mode : {"noise", "zeros", "pool"}
        "noise": a fixed random float16 tensor (costs nothing per batch, and compresses like real
        features in the cache); "zeros": zeros (what the issue's first measurement used; compresses
        to nothing, so cache writes look cheaper than they are); "pool": the mean of each patch's pixels
        in every channel -- a *local* feature, so tiled and untiled extraction must agree exactly.
    device : str
        Where the output lives.
    """

    compiled = None
    layers = None

    def __init__(self, model: str = "S", mode: str = "noise", device: str = "cpu"):
        if mode not in ("noise", "zeros", "pool"):
            raise ValueError(f"mode must be 'noise', 'zeros' or 'pool', got {mode!r}")
        self.spec: BackboneSpec = resolve_spec(model)
        self.mode = mode
        # "noise"/"zeros" cost the host nothing, like a GPU forward: extraction runs its GPU pipeline (writer
        # thread, float16 transfer). "pool" computes on the CPU like the real CPU backbone (exact, in order).
        self.asynchronous = mode != "pool"
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.patch_size = int(self.spec.patch_size)
        self.weights_label = f"stand-in:{mode}"
        self.mean, self.std = IMAGENET_MEAN_STD
        self._noise: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return int(self.spec.embed_dim)

    def prepare(self, host: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Like :meth:`Backbone.prepare`. On a CPU, "noise"/"zeros" emulate a GPU, whose copy, resize and
        normalisation cost the host nothing: only the shape is kept (a meta tensor). "pool", and any mode
        on a real GPU, prepare the real input."""
        if self.mode == "pool" or self.device.type != "cpu":
            from dinomed_napari.preprocess import device_batch

            return device_batch(host, size, self.mean, self.std, self.device)
        return torch.empty((host.shape[0], 3, *size), device="meta")

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, H/16, W/16, C) on ``self.device``: float32 for "pool", float16 (the dtype
        the device would hand back after its cast) for "noise" and "zeros"."""
        b, _, height, width = x.shape
        p = self.patch_size
        h, w = height // p, width // p
        if self.mode == "pool":
            pooled = F.avg_pool2d(x.to(self.device, torch.float32), p)  # (B, 3, h, w)
            reps = -(-self.dim // 3)
            return pooled.repeat(1, reps, 1, 1)[:, : self.dim].permute(0, 2, 3, 1).contiguous()
        if self.mode == "zeros":
            return torch.zeros(b, h, w, self.dim, device=self.device, dtype=torch.float16)
        n = b * h * w * self.dim
        if self._noise is None or self._noise.numel() < n:
            gen = torch.Generator().manual_seed(0)
            self._noise = torch.randn(n, generator=gen).half().to(self.device)
        return self._noise[:n].view(b, h, w, self.dim)

    def __repr__(self) -> str:
        return f"StandInBackbone({self.spec.timm_name} dims, mode={self.mode}, device={self.device})"
