"""Where the backbone runs and in which precision."""

from __future__ import annotations

import torch

from dinomed_napari.errors import WeightsError


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """Choose the compute device: ``prefer`` if given, else CUDA, then Apple MPS, then CPU.

    Parameters
    ----------
    prefer : str or torch.device, optional
        "cpu", "cuda", "cuda:1", "mps" or "auto"/None for automatic choice.

    Raises
    ------
    WeightsError
        The requested device does not exist on this machine.
    """
    if prefer is None or str(prefer) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(prefer)
    except (RuntimeError, TypeError) as exc:
        raise WeightsError(f"unknown device {prefer!r}; expected 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"
                           ) from exc
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dev.type == "cuda" and (dev.index or 0) >= n_cuda:
        raise WeightsError(f"device {prefer!r} requested but CUDA has {n_cuda} device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise WeightsError(f"device {prefer!r} requested but Apple MPS is not available")
    return dev


def compute_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 autocast on GPUs (twice the throughput, ample for features), float32 on CPU (exact, and
    CPU bf16 matmuls are slower than fp32 on most machines)."""
    return torch.bfloat16 if torch.device(device).type in ("cuda", "mps") else torch.float32


#: Largest automatic batch: beyond this GPUs gain nothing and the host queue only holds more memory.
MAX_AUTO_BATCH = 64


def bytes_per_slice(embed_dim: int, size: tuple[int, int], patch: int = 16, out_dim: int | None = None,
                    prefix: int = 5) -> int:
    """Rough peak device memory of one slice in an inference forward (bf16 activations, flash attention).

    Input (3 float32 channels), one block's live activations (qkv 3D, MLP 4D, residual 2D per token, bf16)
    and the float32 + float16 output, doubled for allocator slack and the pipelined next batch.
    """
    tokens = (int(size[0]) // patch) * (int(size[1]) // patch)
    out_dim = out_dim or embed_dim
    act = (tokens + prefix) * embed_dim * 9 * 2
    io = 3 * int(size[0]) * int(size[1]) * 4 + tokens * out_dim * (4 + 2)
    return 2 * (act + io)


def auto_batch_size(backbone, size: tuple[int, int], free_bytes: int | None = None,
                    fraction: float = 0.5) -> int:
    """Batch size for ``backbone`` at input ``size`` from the device's free memory.

    Parameters
    ----------
    backbone : Backbone
        Already on its device (its weights are no longer free memory).
    size : (int, int)
        Network input (h, w) in pixels: the slice input size, or the tile size for tiled planes.
    free_bytes : int, optional
        Free device memory; default: ``torch.cuda.mem_get_info`` on CUDA.
    fraction : float
        Share of the free memory the batch may use.

    Returns
    -------
    int
        A power of two in [1, ``MAX_AUTO_BATCH``]; 2 on the CPU (small batches stay in cache: measured
        fastest, see benchmarks/README.md), 8 on MPS (no free-memory query).
    """
    dev = torch.device(backbone.device)
    if free_bytes is None:
        if dev.type == "cpu":
            return 2
        if dev.type != "cuda":
            return 8
        free_bytes = torch.cuda.mem_get_info(dev)[0]
    per = bytes_per_slice(backbone.spec.embed_dim, size, int(backbone.patch_size), int(backbone.dim))
    n = max(1, min(MAX_AUTO_BATCH, int(free_bytes * fraction // per)))
    return 1 << (n.bit_length() - 1)
