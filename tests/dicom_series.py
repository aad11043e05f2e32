"""Test helper: write small single-frame DICOM series (CT, PET with or without SUV tags) with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)


def write_series(folder: Path, raw_zyx: np.ndarray, *, modality: str = "CT", pixel_spacing=(0.8, 0.7),
                 positions=None, orientation=(1, 0, 0, 0, 1, 0), slopes=None, intercepts=None,
                 extra: dict | None = None, order=None) -> list[Path]:
    """Write ``raw_zyx`` (int16) as one file per slice; ``order`` permutes the file names (not the geometry).

    ``positions`` are the ImagePositionPatient (LPS mm) of each slice in ``raw_zyx`` order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = raw_zyx.shape[0]
    positions = positions if positions is not None else [(-50.0, -60.0, 20.0 + 2.5 * k) for k in range(n)]
    slopes = slopes if slopes is not None else [1.0] * n
    intercepts = intercepts if intercepts is not None else [0.0] * n
    series_uid, study_uid = generate_uid(), generate_uid()
    sop_class = CTImageStorage if modality == "CT" else PositronEmissionTomographyImageStorage
    order = order if order is not None else range(n)
    paths = []
    for file_no, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality = modality
        ds.SeriesDescription = f"test {modality}"
        ds.InstanceNumber = file_no + 1
        ds.ImagePositionPatient = [float(v) for v in positions[k]]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = 2.5
        ds.Rows, ds.Columns = raw_zyx.shape[1], raw_zyx.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slopes[k], intercepts[k]
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(raw_zyx[k].astype("<i2")).tobytes()
        path = folder / f"IM{file_no:04d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def pet_tags(weight: float | None = 70.0, dose: float = 3.7e8, half_life: float = 6586.2,
             injection: str = "093000", series_time: str = "103000", units: str = "BQML") -> dict:
    """SUV-relevant PET tags (DecayCorrection START); ``weight=None`` leaves PatientWeight out."""
    info = Dataset()
    info.RadionuclideTotalDose = dose
    info.RadionuclideHalfLife = half_life
    info.RadiopharmaceuticalStartTime = injection
    tags = {"Units": units, "DecayCorrection": "START", "SeriesDate": "20240101", "SeriesTime": series_time,
            "AcquisitionDate": "20240101", "AcquisitionTime": series_time,
            "RadiopharmaceuticalInformationSequence": [info]}
    if weight is not None:
        tags["PatientWeight"] = weight
    return tags
