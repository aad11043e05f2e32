"""A loaded DINOv3 ViT that turns a batch of images into a grid of patch features."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from dinomed_napari.models.registry import IMAGENET_MEAN_STD, BackboneSpec


class Backbone:
    """A DINOv3 ViT in eval mode plus everything needed to say what produced its features.

    Build it with :func:`dinomed_napari.models.load_backbone`, not directly.

    Parameters
    ----------
    model : torch.nn.Module
        A timm ``Eva`` DINOv3 model, created with ``dynamic_img_size=True`` (any multiple-of-16 input
        works).
    spec : BackboneSpec
        Registry entry of ``model``.
    weights_label : str
        "random", "hub:<tag>" or "file:<name>#<sha8>"; goes into every cache key and report.
    device : torch.device
        Where ``model`` lives.
    dtype : torch.dtype
        Compute precision: float32 (CPU) or bfloat16 autocast (GPU). For bfloat16 the matmul weights
        are cast once here (:func:`cast_matmul_weights`), not on every forward.
    layers : sequence of int, optional
        Block indices whose (layer-normed) patch tokens are concatenated along C. None: final output.
    mean_std : ((float, float, float), (float, float, float))
        Input normalisation the weights expect; pass ``backbone.mean``/``backbone.std`` to
        ``preprocess.to_network_batch`` (ImageNet for lvd1689m, its own for sat493m).
    compile : bool or str
        ``torch.compile`` the forward pass (True: inductor; a string: that backend). Opt-in: the first
        batch of each new input size pays a compile (a minute or more on a laptop CPU), later batches
        run faster because RoPE and other element-wise steps are fused.
    """

    def __init__(self, model: torch.nn.Module, spec: BackboneSpec, weights_label: str,
                 device: torch.device, dtype: torch.dtype, layers: Sequence[int] | None = None,
                 mean_std: tuple[tuple[float, ...], tuple[float, ...]] = IMAGENET_MEAN_STD,
                 compile: bool | str = False):
        self.model = model.eval().to(device)
        if dtype != torch.float32:
            cast_matmul_weights(self.model, dtype)
        self.spec = spec
        self.weights_label = weights_label
        self.device = torch.device(device)
        self.dtype = dtype
        self.layers = _check_layers(layers, spec.depth)
        self.patch_size = int(spec.patch_size)
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 5))
        self.mean, self.std = (tuple(float(v) for v in t) for t in mean_std)
        self.compiled = "inductor" if compile is True else (compile or None)
        self._forward = self._tokens
        if self.compiled:
            self._forward = torch.compile(self._tokens, backend=self.compiled)

    @property
    def dim(self) -> int:
        """Channels C of :meth:`patch_features` (embed dim times the number of layers)."""
        return self.spec.embed_dim * (len(self.layers) if self.layers else 1)

    @property
    def name(self) -> str:
        """timm model name."""
        return self.spec.timm_name

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (h, w) of an input of ``height`` x ``width`` pixels."""
        return height // self.patch_size, width // self.patch_size

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def prepare(self, host: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """A host batch of unit-range slices (B, H, W[, 3]) -> the normalised (B, 3, h, w) input on the
        device: one non-blocking copy, then resize, 3 channels and normalisation run on the device."""
        from dinomed_napari.preprocess import device_batch

        return device_batch(host, size, self.mean, self.std, self.device)

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """Patch features of an ImageNet-normalised batch.

        Parameters
        ----------
        x : torch.Tensor
            Shape (B, 3, H, W), float; H and W multiples of the patch size (16).

        Returns
        -------
        torch.Tensor
            Shape (B, H/16, W/16, C), float32, on ``self.device``. The class and register tokens
            (``num_prefix_tokens``) are dropped.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"patch_features expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        p = self.patch_size
        if height % p or width % p or height < p or width < p:
            raise ValueError(f"input size {height}x{width} is not a positive multiple of the patch size {p}")
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            out = self._forward(x)
        return out.float()

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        h, w = self.grid(height, width)
        if self.layers is None:
            tokens = self.model.forward_features(x)[:, self.num_prefix_tokens:]
            return tokens.reshape(b, h, w, -1)
        # norm=True: each layer on the same scale as the final output, so concatenation is balanced.
        maps = self.model.forward_intermediates(x, indices=list(self.layers), norm=True, stop_early=True,
                                                output_fmt="NCHW", intermediates_only=True)
        return torch.cat(maps, dim=1).permute(0, 2, 3, 1)

    def __repr__(self) -> str:
        layers = "" if self.layers is None else f", layers={self.layers}"
        layers += f", compiled={self.compiled}" if self.compiled else ""
        return (f"Backbone({self.spec.timm_name} [{self.weights_label}], dim={self.dim}, "
                f"device={self.device}, dtype={str(self.dtype).removeprefix('torch.')}{layers})")


def cast_matmul_weights(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast Linear and Conv weights (and biases) to ``dtype`` once, in place; norms stay float32.

    Autocast would cast these same tensors to ``dtype`` on every forward (and the result is the same:
    one round-to-nearest of the float32 values); layer norms and softmax still run in float32 under it.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.Linear | torch.nn.Conv2d):
            m.to(dtype)


def _check_layers(layers: Sequence[int] | None, depth: int) -> tuple[int, ...] | None:
    """Normalise ``layers`` to sorted unique non-negative block indices (negatives count from the end)."""
    if layers is None:
        return None
    idx = sorted({int(i) + depth if int(i) < 0 else int(i) for i in layers})
    if not idx or idx[0] < 0 or idx[-1] >= depth:
        raise ValueError(f"layers {tuple(layers)} out of range: this model has blocks 0..{depth - 1}")
    return tuple(idx)
