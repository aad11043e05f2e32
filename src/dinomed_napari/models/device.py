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
