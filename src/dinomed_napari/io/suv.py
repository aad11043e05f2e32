"""PET body-weight SUV (SUVbw) from DICOM tags, or the reason it cannot be computed.

SUVbw = C(Bq/ml) * weight(g) / dose(Bq), the injected dose decayed to the time the image values are
decay-corrected to (DecayCorrection START: the series start; ADMIN: injection, no decay), following the
QIBA/UPICT "vendor-neutral" SUV recipe (1 ml of tissue taken as 1 g).
"""

from __future__ import annotations

import datetime as dt

from pydicom.valuerep import DA, DT, TM


def dicom_datetime(date, time) -> dt.datetime | None:
    """DICOM DA + TM strings -> naive datetime, or None when either is missing/unparsable."""
    try:
        if not date or not time:
            return None
        return dt.datetime.combine(DA(str(date)), TM(str(time)))
    except (TypeError, ValueError):
        return None


def _injection_time(info, series_dt: dt.datetime) -> dt.datetime | None:
    start = info.get("RadiopharmaceuticalStartDateTime")
    if start:
        try:
            return DT(str(start)).replace(tzinfo=None)
        except (TypeError, ValueError):
            pass
    t = info.get("RadiopharmaceuticalStartTime")
    inj = dicom_datetime(series_dt.strftime("%Y%m%d"), t) if t else None
    if inj is not None and inj > series_dt:  # injected before midnight, scanned after
        inj -= dt.timedelta(days=1)
    return inj


def suv_bw_factor(ds, earliest_acquisition: dt.datetime | None = None) -> tuple[float | None, dict]:
    """Multiplier that turns a PET series' Bq/ml values into SUVbw.

    Parameters
    ----------
    ds : pydicom.Dataset
        Any image of the series (the SUV tags are series-level).
    earliest_acquisition : datetime, optional
        Earliest AcquisitionDate/Time over the series; used as the scan start when SeriesTime is later
        (series re-created after the scan).

    Returns
    -------
    factor : float or None
        None when the tags do not allow SUV; then ``info["suv_note"]`` says why.
    info : dict
        JSON-ready details (weight, dose, half-life, times, decay factor) or the note.
    """
    units = str(ds.get("Units", "")).upper()
    if units == "GML":  # values are already SUVbw (g/ml)
        return 1.0, {"suv_source": "Units GML: values already SUVbw"}
    if units != "BQML":
        return None, {"suv_note": f"PET Units is {units or 'missing'!r}, not 'BQML': values kept as stored, "
                                  "no SUV conversion"}
    missing = []
    weight = ds.get("PatientWeight")
    if not weight or float(weight) <= 0:
        missing.append("PatientWeight")
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    info = seq[0] if seq else {}
    dose = info.get("RadionuclideTotalDose") if seq else None
    half_life = info.get("RadionuclideHalfLife") if seq else None
    if not dose or float(dose) <= 0:
        missing.append("RadionuclideTotalDose")
    if not half_life or float(half_life) <= 0:
        missing.append("RadionuclideHalfLife")
    series_dt = dicom_datetime(ds.get("SeriesDate"), ds.get("SeriesTime")) or earliest_acquisition
    if series_dt is None:
        missing.append("SeriesDate/SeriesTime")
    inj_dt = _injection_time(info, series_dt) if (seq and series_dt is not None) else None
    correction = str(ds.get("DecayCorrection", "START")).upper()
    if inj_dt is None and correction != "ADMIN":
        missing.append("RadiopharmaceuticalStartTime")
    if missing:
        return None, {"suv_note": f"PET values kept in Bq/ml (BQML): SUVbw needs {', '.join(missing)}, "
                                  "missing or zero in the DICOM tags"}
    if correction not in ("START", "ADMIN"):
        return None, {"suv_note": f"PET values kept in Bq/ml (BQML): DecayCorrection is {correction!r}; only "
                                  "START and ADMIN are supported for SUVbw"}
    ref_dt = series_dt
    if earliest_acquisition is not None and earliest_acquisition < series_dt:
        ref_dt = earliest_acquisition
    elapsed = 0.0 if correction == "ADMIN" else (ref_dt - inj_dt).total_seconds()
    if elapsed < 0:
        return None, {"suv_note": f"PET values kept in Bq/ml (BQML): injection time {inj_dt.isoformat()} is "
                                  f"after the scan start {ref_dt.isoformat()}"}
    decay = 2.0 ** (-elapsed / float(half_life))
    factor = float(weight) * 1000.0 / (float(dose) * decay)
    return factor, {
        "suv_source": "DICOM tags (body weight, decay-corrected dose)",
        "patient_weight_kg": float(weight),
        "injected_dose_bq": float(dose),
        "half_life_s": float(half_life),
        "injection_time": inj_dt.isoformat() if inj_dt else None,
        "reference_time": ref_dt.isoformat(),
        "decay_correction": correction,
        "decay_factor": decay,
        "suv_factor": factor,
    }
