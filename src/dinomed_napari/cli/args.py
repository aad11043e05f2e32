"""Argument types and checks of the CLI: every bad flag is a usage error (exit 2) before any slow work."""

from __future__ import annotations

import argparse

#: Smallest --resolution: a 2x2 patch grid; below that the features describe nothing.
MIN_RESOLUTION, MAX_RESOLUTION = 32, 4096


def int_in(lo: int, hi: int | None = None, what: str = "value"):
    """argparse type: an integer in [lo, hi] (hi None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {value}")
        return value

    return parse


def int_in_or(lo: int, hi: int | None, what: str, word: str):
    """argparse type: :func:`int_in`, or the literal ``word`` (e.g. "auto")."""
    number = int_in(lo, hi, what)
    return lambda text: text if text == word else number(text)


def resolution(text: str) -> int:
    """argparse type for --resolution: a multiple of 16 in [MIN_RESOLUTION, MAX_RESOLUTION]."""
    value = int_in(MIN_RESOLUTION, MAX_RESOLUTION, "resolution")(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"resolution must be a multiple of 16 (the patch size), got "
                                         f"{value}; try {max(MIN_RESOLUTION, value // 16 * 16)}")
    return value


def layers(text: str) -> tuple[int, ...]:
    """argparse type for --layers: comma-separated block indices (checked against the model later)."""
    try:
        out = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated block indices, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one block index, got {text!r}")
    return out


def point(text: str) -> list[int]:
    """argparse type for a voxel z,y,x (a coordinate copied from napari, e.g. 33.4, is rounded)."""
    try:
        z, y, x = (int(round(float(v))) for v in text.split(","))
    except (ValueError, OverflowError):  # OverflowError: inf
        raise argparse.ArgumentTypeError(f"expected a voxel as z,y,x (e.g. 33,79,81), got {text!r}") from None
    return [z, y, x]


def check_model_and_layers(model: str, layer_list) -> None:
    """Raise a usage error for an unknown --model or --layers outside its blocks (no torch import)."""
    from dinomed_napari.errors import DinomedError
    from dinomed_napari.models.registry import resolve_spec

    spec = resolve_spec(model)  # WeightsError naming the known models
    if layer_list:
        bad = [i for i in layer_list if not -spec.depth <= int(i) < spec.depth]
        if bad:
            raise DinomedError(f"--layers {','.join(map(str, layer_list))}: block(s) {bad} do not exist; "
                               f"{spec.timm_name} has blocks 0..{spec.depth - 1} (negatives count from "
                               "the end)")


def check_voxels(points, shape: tuple[int, ...], flag: str = "--seed") -> None:
    """Raise when a z,y,x voxel is outside a volume of ``shape``."""
    from dinomed_napari.errors import DinomedError

    for p in points or []:
        if not all(0 <= int(v) < int(n) for v, n in zip(p, shape, strict=True)):
            raise DinomedError(f"{flag} {','.join(map(str, p))} is outside the volume of shape (Z, Y, X) "
                               f"{tuple(int(n) for n in shape)}; expected 0 <= z < {shape[0]}, "
                               f"0 <= y < {shape[1]}, 0 <= x < {shape[2]}")


def days(text: str) -> float:
    """argparse type for an age in days (a number >= 0, fractions allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"days must be at least 0, got {text}")
    return value


_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3, "GB": 1024**3,
          "T": 1024**4, "TB": 1024**4}


def size_bytes(text: str) -> int:
    """argparse type for a size such as 500M, 20G or 1.5T (powers of 1024; a bare number is bytes)."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 500M, 20G or 1.5T, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])
