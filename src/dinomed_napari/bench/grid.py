"""The bench settings and its scaling grid: every case x (model x input resolution), plus the baseline.

A *unit* is the work scheduled as one task (in-process or on dask): one case with one backbone setting
(features extracted once, then every selected protocol on them), or one case with the filter-bank baseline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dinomed_napari.errors import DinomedError

from .cases import Case

PROTOCOLS = ("fewclick", "fewclick3d", "isolation", "probe", "baseline")
# Few-click segmenter options scored side by side (ScribbleSegmenter settings, see protocols/fewclick.py).
VARIANTS = ("linear", "rf", "fusion", "hybrid", "triplanar", "default")


class BenchConfigError(DinomedError, ValueError):
    """A bench setting that cannot run (unknown protocol, no weights chosen, bad number)."""


@dataclass(frozen=True)
class BenchSettings:
    """Everything a bench run depends on besides the cases (all of it goes into ``results.json``).

    Attributes
    ----------
    weights : str
        "hub", "hub:<tag>", "random" or a weights file, for every model; never defaulted.
    protocols, models, resolutions, slices, variants : tuples
        Protocols to run, backbones (short or timm names), input resolutions (long side, px), numbers of
        annotated slices for the few-click curve, few-click segmenter variants.
    strokes : int
        Strokes per class on each annotated slice.
    seed : int
        Seeds torch, NumPy and scikit-learn; random backbone weights are drawn from it.
    axis : int
        Slicing axis of the features and of the annotated slices (0 axial).
    folds : int
        Cross-validation folds of the linear probe (fewer when a class has fewer samples).
    cache_dir : str or None
        Feature cache for pretrained weights (None: the default cache). Random weights always compute in
        memory: their cache key cannot tell two random draws apart.
    """

    weights: str
    protocols: tuple[str, ...] = PROTOCOLS
    models: tuple[str, ...] = ("S",)
    resolutions: tuple[int, ...] = (224,)
    slices: tuple[int, ...] = (1, 2, 3)
    variants: tuple[str, ...] = ("linear",)
    strokes: int = 3
    seed: int = 0
    axis: int = 0
    folds: int = 5
    batch_size: int | str = "auto"  # "auto": from free GPU memory, 2 on a CPU
    device: str | None = None
    cache_dir: str | None = None

    def __post_init__(self):
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise BenchConfigError(f"unknown protocol(s) {bad}; choose from {', '.join(PROTOCOLS)}")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise BenchConfigError(f"unknown few-click variant(s) {bad}; choose from {', '.join(VARIANTS)}")
        if not str(self.weights or "").strip():
            raise BenchConfigError("no weights chosen: pass --weights hub, --weights PATH or "
                                   "--weights random")
        for name, values in (("resolutions", self.resolutions), ("slices", self.slices)):
            if not values or any(int(v) < 1 for v in values):
                raise BenchConfigError(f"{name} must be positive integers, got {values}")
        if self.strokes < 1 or self.folds < 2 or self.axis not in (0, 1, 2):
            raise BenchConfigError(f"need strokes >= 1, folds >= 2, axis in 0..2; got "
                                   f"strokes={self.strokes}, "
                                   f"folds={self.folds}, axis={self.axis}")

    @property
    def needs_backbone(self) -> bool:
        return any(p in self.protocols for p in ("fewclick", "fewclick3d", "isolation", "probe"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Unit:
    """One task: a case with a backbone setting (``kind="backbone"``) or with the baseline."""

    case: Case
    kind: str
    model: str | None = None
    resolution: int | None = None

    @property
    def label(self) -> str:
        return f"{self.case.name} baseline" if self.kind == "baseline" else \
            f"{self.case.name} {self.model}@{self.resolution}"


def plan_units(cases: list[Case], settings: BenchSettings) -> list[Unit]:
    """All units of a run, case by case: the baseline first, then models x resolutions (smallest first)."""
    units: list[Unit] = []
    for case in cases:
        if "baseline" in settings.protocols:
            units.append(Unit(case, "baseline"))
        if settings.needs_backbone:
            for model in settings.models:
                for res in sorted(int(r) for r in settings.resolutions):
                    units.append(Unit(case, "backbone", model, res))
    return units


def scaling_table(rows: list[dict[str, Any]], n_slices: int | None = None) -> dict[str, dict[int, float]]:
    """Mean few-click Dice per model and resolution (the paper's Figure 1 axes), over cases and labels.

    Uses the ``linear`` variant at ``n_slices`` annotated slices (default: the largest in the rows).
    Returns ``{model: {resolution: mean dice}}``.
    """
    few = [r for r in rows if r.get("protocol") == "fewclick" and r.get("method") == "linear"
           and r.get("status") == "ok" and r.get("dice") is not None]
    if not few:
        return {}
    n = n_slices if n_slices is not None else max(int(r["n_slices"]) for r in few)
    acc: dict[str, dict[int, list[float]]] = {}
    for r in few:
        if int(r["n_slices"]) == n:
            acc.setdefault(str(r["model"]), {}).setdefault(int(r["resolution"]), []).append(float(r["dice"]))
    return {m: {res: sum(v) / len(v) for res, v in sorted(d.items())} for m, d in acc.items()}
