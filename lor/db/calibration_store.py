"""Calibration slice of the store: versions of per-tract zeropoints and noise scales."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, insert, select

from lor.db.models import CalibrationTerm, CalibrationVersion


def create_calibration_version(
    conn: Connection,
    name: str,
    terms: dict[int, dict[str, tuple[float, float | None, float, float | None]]],
    method: str,
    provenance: dict[str, Any],
    parent_id: int | None = None,
) -> int:
    """Store a version; ``terms[tract][band] = (zp_offset, zp_err, noise_scale, scale_err)``."""
    version = conn.execute(
        insert(CalibrationVersion)
        .values(name=name, parent_id=parent_id, method=method, provenance=provenance)
        .returning(CalibrationVersion.id)
    ).scalar_one()
    rows = [
        {
            "calibration_version_id": version,
            "tract_id": tract,
            "band": band,
            "zeropoint_offset_mag": zp,
            "zeropoint_offset_err": zp_err,
            "noise_scale": scale,
            "noise_scale_err": scale_err,
        }
        for tract, bands in terms.items()
        for band, (zp, zp_err, scale, scale_err) in bands.items()
    ]
    if rows:
        conn.execute(insert(CalibrationTerm), rows)
    return version


def terms_by_tract(
    conn: Connection, version_id: int, bands: Sequence[str]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{tract: (zeropoint offsets (B,), noise scales (B,))}`` in ``bands`` order.

    Bands a tract has no term for get offset 0 and scale 1.
    """
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    index = {b: i for i, b in enumerate(bands)}
    rows = conn.execute(
        select(
            CalibrationTerm.tract_id,
            CalibrationTerm.band,
            CalibrationTerm.zeropoint_offset_mag,
            CalibrationTerm.noise_scale,
        ).where(CalibrationTerm.calibration_version_id == version_id)
    )
    for tract, band, zp, scale in rows:
        if band not in index:
            continue
        zps, scales = out.setdefault(tract, (np.zeros(len(bands)), np.ones(len(bands))))
        zps[index[band]], scales[index[band]] = zp, scale
    return out
