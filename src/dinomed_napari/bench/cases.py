"""Bench cases: an image, its mask and which labels to score; from flags, a YAML/TOML config or the demo."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dinomed_napari.errors import VolumeError

Crop = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
CASE_KEYS = {"name", "image", "mask", "labels", "modality", "window", "crop", "target", "series"}


@dataclass(frozen=True)
class Case:
    """One volume to score.

    Attributes
    ----------
    name : str
        Unique name (file stems in the outputs).
    image, mask : str
        Paths readable by :func:`dinomed_napari.io.load_volume`; the mask on the image's voxel grid.
    labels : tuple of int or None
        Mask values scored, each its own class (1..K in this order); every other value is background.
        None: every non-zero value of the mask.
    modality : str or None
        "CT", "MR", "PT", "EM"; None lets the reader decide.
    window : str
        Preprocessing window preset (see :class:`dinomed_napari.preprocess.Preprocess`).
    crop : ((z0, z1), (y0, y1), (x0, x1)) or None
        Sub-volume to keep (voxel indices, end exclusive) so large cases stay cheap.
    target : int or None
        Case-level class (e.g. 1 = lesion present, 0 = healthy) for the volume-level linear probe.
    series : str or None
        SeriesInstanceUID when ``image`` is a DICOM folder holding several series.
    """

    name: str
    image: str
    mask: str
    labels: tuple[int, ...] | None = None
    modality: str | None = None
    window: str = "auto"
    crop: Crop | None = None
    target: int | None = None
    series: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedCase:
    """A case read from disk: the (cropped) image volume and its class map (0 background, 1..K labels)."""

    case: Case
    volume: Any  # dinomed_napari.io.Volume
    truth: np.ndarray
    labels: tuple[int, ...]
    extra: dict = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in self.volume.spacing)  # type: ignore[return-value]


def _crop_volume(vol, crop: Crop):
    sl = tuple(slice(int(a), int(b)) for a, b in crop)
    data = vol.data[sl]
    if min(data.shape) == 0:
        raise VolumeError(f"crop {crop} of {vol.source} (shape {vol.shape}) is empty")
    # Keep the world position: voxel index (i, j, k) = (x, y, z) shifts by the crop start.
    shift = np.eye(4)
    shift[:3, 3] = [crop[2][0], crop[1][0], crop[0][0]]
    return replace(vol, data=np.ascontiguousarray(data), affine=np.asarray(vol.affine) @ shift,
                   meta={**vol.meta, "crop": [list(c) for c in crop]})


def load_case(case: Case) -> LoadedCase:
    """Read a case and check it: the mask on the image's grid, every requested label present.

    Raises
    ------
    VolumeError
        Unreadable file, mask of another shape or affine, a label absent from the mask, no label at all.
    """
    from dinomed_napari.io import load_volume
    from dinomed_napari.io.validate import check_same_grid, integer_labels

    image = load_volume(case.image, modality=case.modality, series=case.series)
    mask = load_volume(case.mask, check=False)  # a mask may be all zeros (a case without the structure)
    check_same_grid(image, mask, f"case {case.name!r}: mask {case.mask}")
    if case.crop is not None:
        image, mask = _crop_volume(image, case.crop), _crop_volume(mask, case.crop)
    values = integer_labels(mask.data, f"case {case.name!r}: mask {case.mask}")
    present = [int(v) for v in np.unique(values)]
    labels = case.labels if case.labels is not None else tuple(v for v in present if v != 0)
    missing = [lab for lab in labels if lab not in present]
    if missing:
        where = " (inside the crop)" if case.crop is not None else ""
        raise VolumeError(f"case {case.name!r}: label(s) {missing} not found in mask {case.mask}{where}; "
                          f"labels present: {present[:20]}")
    if not labels:
        raise VolumeError(f"case {case.name!r}: mask {case.mask} has no non-zero label to score")
    truth = np.zeros(values.shape, dtype=np.uint8)
    for k, lab in enumerate(labels, start=1):
        truth[values == lab] = k
    return LoadedCase(case=case, volume=image, truth=truth, labels=tuple(int(v) for v in labels))


def parse_labels(text: str | list | tuple | None) -> tuple[int, ...] | None:
    """``"1,2"`` or ``[1, 2]`` -> (1, 2); None/"" -> None (all non-zero labels)."""
    if text is None or text == "":
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        return tuple(int(str(v).strip()) for v in items)
    except ValueError as exc:
        raise VolumeError(f"labels must be integers like 1,2; got {text!r}") from exc


def case_from_dict(d: dict[str, Any], base: Path | None = None, index: int = 0) -> Case:
    """A :class:`Case` from a config entry; relative paths are resolved against ``base``."""
    unknown = sorted(set(d) - CASE_KEYS)
    if unknown:
        raise VolumeError(f"case #{index + 1} in the config has unknown key(s) {unknown}; "
                          f"known: {', '.join(sorted(CASE_KEYS))}")
    for key in ("image", "mask"):
        if key not in d:
            raise VolumeError(f"case #{index + 1} in the config has no {key!r} entry: {d}")

    def _path(p: str) -> str:
        q = Path(str(p)).expanduser()
        return str(q if q.is_absolute() or base is None else base / q)

    crop = d.get("crop")
    return Case(
        name=str(d.get("name") or Path(str(d["image"])).name.split(".")[0]),
        image=_path(d["image"]), mask=_path(d["mask"]), labels=parse_labels(d.get("labels")),
        modality=d.get("modality"), window=str(d.get("window", "auto")),
        crop=None if crop is None else tuple((int(a), int(b)) for a, b in crop),  # type: ignore[arg-type]
        target=None if d.get("target") is None else int(d["target"]),
        series=None if d.get("series") is None else str(d["series"]),
    )


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) bench config into a dict (``cases`` becomes Case objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bench config {path} does not exist")
    text = path.read_text()
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise VolumeError(f"bench config {path}: expected a .yaml, .yml or .toml file")
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise VolumeError(f"bench config {path}: not valid TOML ({exc})") from exc
    except Exception as exc:  # yaml.YAMLError: the message holds line and column
        raise VolumeError(f"bench config {path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise VolumeError(f"bench config {path}: expected a mapping (key: value lines) at the top level, "
                          f"found {type(data).__name__}")
    entries = data.get("cases", [])
    if not isinstance(entries, list) or not all(isinstance(c, dict) for c in entries):
        raise VolumeError(f"bench config {path}: 'cases' must be a list of mappings "
                          "(- name: ..., image: ..., mask: ...)")
    cases = [case_from_dict(c, path.parent, i) for i, c in enumerate(entries)]
    return {**data, "cases": cases}


def unique_names(cases: list[Case]) -> list[Case]:
    """Make case names unique (``name``, ``name-2`` ...) so their output files never collide."""
    seen: dict[str, int] = {}
    out = []
    for c in cases:
        n = seen.get(c.name, 0) + 1
        seen[c.name] = n
        out.append(c if n == 1 else replace(c, name=f"{c.name}-{n}"))
    return out


def demo_cases() -> list[Case]:
    """The bundled real demo cases, cropped so the whole demo runs in minutes on a 2-core CPU.

    CTA aorta (1.5 mm; the crop holds its lower end, so some slices lack it: the slice probe has both
    classes), TotalSegmentator CT spleen (1) and liver (5) at 3 mm, ISBI 2012 EM cell interior
    (255) vs membrane. Crops keep each structure inside.
    """
    from dinomed_napari.samples import sample_path

    return [
        Case("cta_aorta", str(sample_path("cta_aorta")), str(sample_path("cta_aorta_mask")), (1,), "CT",
             "soft_tissue", ((120, 164), (24, 120), (24, 96))),
        Case("ct_spleen_liver", str(sample_path("ct_organs")), str(sample_path("ct_organs_seg")), (1, 5),
             "CT", "soft_tissue", None),
        Case("em_cells", str(sample_path("em")), str(sample_path("em_labels")), (255,), "EM", "auto",
             ((0, 12), (0, 128), (0, 128))),
    ]
