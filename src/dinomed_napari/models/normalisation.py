"""The input normalisation weights expect, read from the weights (metadata, config next to them), not guessed
from a file name alone. No torch import: the feature cache needs it to compute keys without a network."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dinomed_napari.models.registry import IMAGENET_MEAN_STD, SAT_MEAN_STD

#: MedDINOv3's CT recipe (its authors' demo): clip HU to [-1000, 1000], then (HU - 65.11) / 178.02. On the
#: [0, 1] scale of a level 0 / width 2000 window, u = (HU + 1000) / 2000, that is (u - mean) / std with:
MEDDINOV3_WINDOW = (0.0, 2000.0)
MEDDINOV3_MEAN_STD = ((1065.11 / 2000,) * 3, (178.02 / 2000,) * 3)


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean and std applied to [0, 1] inputs, where they came from, and the CT window
    (level, width in HU) they assume, if any."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    window: tuple[float, float] | None = None

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.mean, self.std


def _stats(mean, std, where: str) -> Normalisation | None:
    try:
        m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        return None
    if len(m) != 3 or len(s) != 3 or min(s) <= 0:
        return None
    return Normalisation(m, s, where)


def _from_safetensors(path: Path) -> Normalisation | None:
    if path.suffix != ".safetensors":
        return None
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            meta = json.loads(fh.read(min(n, 100_000_000))).get("__metadata__") or {}
        return _stats(json.loads(meta["mean"]), json.loads(meta["std"]), f"{path.name} metadata")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _from_config(path: Path) -> Normalisation | None:
    """timm's ``config.json`` (pretrained_cfg mean/std) or transformers' ``preprocessor_config.json``
    next to the weights, as in a Hugging Face download."""
    for name, keys in (("config.json", ("mean", "std")),
                       ("preprocessor_config.json", ("image_mean", "image_std"))):
        cfg_path = path.with_name(name)
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            continue
        for block in (cfg.get("pretrained_cfg") or {}, cfg):
            if isinstance(block, dict) and keys[0] in block and keys[1] in block:
                found = _stats(block[keys[0]], block[keys[1]], str(cfg_path))
                if found is not None:
                    return found
    return None


_MEMO: dict[tuple, Normalisation] = {}


def weights_normalisation(weights: str | os.PathLike, label: str) -> Normalisation:
    """The normalisation for these weights (``label`` from :func:`~.features.cache.weights_label`).

    Hub and random weights: by tag (satellite ``sat493m`` or ImageNet). Files, first match: mean/std in the
    safetensors metadata; a timm/transformers config next to the file; MedDINOv3 (name) -> its CT recipe;
    ``sat493m`` in the name -> satellite; else ImageNet, with ``source`` saying it is a default.
    """
    if not label.startswith("file:"):
        sat = "sat493m" in label
        return Normalisation(*(SAT_MEAN_STD if sat else IMAGENET_MEAN_STD), f"{label} (hub tag)")
    path = Path(weights).expanduser()
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _MEMO:
        name = path.name.lower()
        found = _from_safetensors(path) or _from_config(path)
        if found is None and "meddino" in name:
            found = Normalisation(*MEDDINOV3_MEAN_STD, "MedDINOv3 CT recipe (HU clipped to [-1000, 1000], "
                                  "mean 65.11, std 178.02)", MEDDINOV3_WINDOW)
        if found is None and "sat493m" in name:
            found = Normalisation(*SAT_MEAN_STD, f"satellite statistics ('sat493m' in {path.name})")
        _MEMO[memo] = found or Normalisation(*IMAGENET_MEAN_STD, f"ImageNet statistics (default: {path.name} "
                                             "carries none and no config.json lies next to it)")
    return _MEMO[memo]
