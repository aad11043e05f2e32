"""DICOM series (a folder of single-frame images) with pydicom: slice order, rescale, spacing, RAS affine."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.suv import dicom_datetime, suv_bw_factor
from dinomed_napari.io.volume import Volume

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _headers(folder: Path) -> dict[str, list]:
    """SeriesInstanceUID -> headers (no pixels) of the image files under ``folder``; other files skipped."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series = defaultdict(list)
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.upper() == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue  # not DICOM (README, thumbnails ...) or unreadable header
        if "Rows" in ds and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            ds.filename = str(p)
            series[str(ds.get("SeriesInstanceUID", ""))].append(ds)
    return series


def _choose(series: dict[str, list], folder: Path, series_uid, modality) -> list:
    if not series:
        raise VolumeError(f"{folder}: no DICOM image with position/orientation tags found; expected a folder "
                          "holding one DICOM series (one file per slice)")
    if series_uid is not None:
        if series_uid not in series:
            raise VolumeError(f"{folder}: no series {series_uid!r}; found {sorted(series)}")
        return series[series_uid]
    cands = {u: s for u, s in series.items() if modality is None or str(s[0].get("Modality")) == modality}
    if len(cands) == 1:
        return next(iter(cands.values()))
    listing = "; ".join(f"{u} ({s[0].get('Modality', '?')}, {len(s)} images, "
                        f"{s[0].get('SeriesDescription', '')!s})" for u, s in (cands or series).items())
    if not cands:
        raise VolumeError(f"{folder}: no {modality} series among {listing}. Choose one with "
                          "modality='CT'/'PT'/'MR' or series=<SeriesInstanceUID> (--series UID).")
    which = f"several {modality} series" if modality else "several series"
    how = ("" if modality else "modality='CT'/'PT'/'MR' or ") + "series=<SeriesInstanceUID>"
    raise VolumeError(f"{folder}: {which}: {listing}. Choose one with {how} (on the command line "
                      "--series UID); none is picked silently.")


def read_dicom_series(folder: Path, *, series_uid: str | None = None, modality: str | None = None) -> Volume:
    """Read one DICOM series as a (Z, Y, X) `Volume`.

    Slices are sorted by ImagePositionPatient projected on the slice normal (row x column direction);
    each slice's RescaleSlope/Intercept (modality LUT) is applied; the affine maps (column, row, slice)
    to RAS mm (DICOM's LPS with x and y negated). PET in Bq/ml becomes SUVbw when the tags allow
    (`dinomed_napari.io.suv`), otherwise stays BQML with the reason in ``meta["suv_note"]``.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut

    headers = _choose(_headers(folder), folder, series_uid, modality)
    first = headers[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise VolumeError(f"{first.filename}: multi-frame (enhanced) DICOM is not supported; expected one "
                          "single-frame file per slice")
    orient = np.asarray(first.ImageOrientationPatient, float)
    row_cos, col_cos = orient[:3], orient[3:]
    normal = np.cross(row_cos, col_cos)
    pos = np.array([np.asarray(h.ImagePositionPatient, float) for h in headers])
    order = np.argsort(pos @ normal, kind="stable")
    headers, pos = [headers[i] for i in order], pos[order]
    along = pos @ normal
    gaps = np.diff(along)
    if len(gaps) and np.min(np.abs(gaps)) < 1e-3:
        n_pos = len(np.unique(np.round(along, 3)))
        raise VolumeError(f"{folder}: {len(headers)} images share {n_pos} slice positions (a 4D series: "
                          "several time points/echoes); expected one image per position")
    shapes = {(int(h.Rows), int(h.Columns)) for h in headers}
    if len(shapes) > 1:
        raise VolumeError(f"{folder}: slices of different sizes {sorted(shapes)}; expected one in-plane size")
    dy, dx = (float(v) for v in first.get("PixelSpacing", (1.0, 1.0)))
    if len(headers) > 1:
        step = (pos[-1] - pos[0]) / (len(headers) - 1)
        dz = float(np.median(gaps))
    else:
        dz = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)) or 1.0)
        step = normal * dz

    slices, slopes, inters = [], [], []
    for h in headers:
        try:
            ds = pydicom.dcmread(h.filename)
            raw = ds.pixel_array
        except Exception as exc:  # truncated pixel data, missing decoder for a compressed transfer syntax ...
            raise VolumeError(f"{h.filename}: cannot decode DICOM pixel data ({type(exc).__name__}: {exc})") \
                from exc
        slopes.append(float(ds.get("RescaleSlope", 1.0)))
        inters.append(float(ds.get("RescaleIntercept", 0.0)))
        slices.append(np.asarray(apply_modality_lut(raw, ds), dtype=np.float32))
    data = np.stack(slices)
    if all(s == 1.0 for s in slopes) and all(float(i).is_integer() for i in inters) and \
            data.min() >= -32768 and data.max() <= 32767:
        data = data.astype(np.int16)  # CT-style integer HU: keep it compact and exact

    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_cos * dx, col_cos * dy, step, pos[0]
    affine = np.eye(4)
    affine[:3] = _LPS_TO_RAS @ lps[:3]
    mod = str(first.get("Modality", "")) or None
    meta = {"format": "dicom", "series_uid": str(first.get("SeriesInstanceUID", "")),
            "series_description": str(first.get("SeriesDescription", "")), "n_files": len(headers)}
    if len(gaps) and np.max(np.abs(gaps - dz)) > max(0.01, 0.01 * abs(dz)):
        meta["dicom_note"] = (f"irregular slice gaps {float(np.min(gaps)):.3f}-{float(np.max(gaps)):.3f} mm; "
                              f"the grid assumes the median {dz:.3f} mm")
    units = {"CT": "HU"}.get(mod or "", "a.u.")
    if mod == "PT":
        acq = [dicom_datetime(h.get("AcquisitionDate"), h.get("AcquisitionTime")) for h in headers]
        acq = [a for a in acq if a is not None]
        factor, info = suv_bw_factor(first, min(acq) if acq else None)
        meta.update(info)
        if factor is not None:
            data, units = data.astype(np.float32) * np.float32(factor), "SUVbw"
        else:
            units = "BQML" if str(first.get("Units", "")).upper() == "BQML" else "a.u."
    return Volume(data=data, spacing=(abs(dz), dy, dx), affine=affine, modality=mod, units=units,
                  source=str(folder), meta=meta)
