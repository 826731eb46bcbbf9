"""Calibration slice of the store: versions of per-tract zeropoints and noise scales."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, insert, select

from lor.db.models import CalibrationSurveyTerm, CalibrationTerm, CalibrationVersion

if TYPE_CHECKING:
    from lor.inference.model_error import ModelError


def create_calibration_version(
    conn: Connection,
    name: str,
    terms: dict[int, dict[str, tuple[float, float | None, float, float | None]]],
    method: str,
    provenance: dict[str, Any],
    parent_id: int | None = None,
    survey_terms: dict[str, tuple[float, float | None, float, float | None]] | None = None,
) -> int:
    """Store a version; ``terms[tract][band] = (zp_offset, zp_err, noise_scale, scale_err)``
    and ``survey_terms[band] = (sed_offset, sed_offset_err, error_floor, error_floor_err)``."""
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
    if survey_terms:
        conn.execute(
            insert(CalibrationSurveyTerm),
            [
                {
                    "calibration_version_id": version,
                    "band": band,
                    "sed_offset_mag": sed,
                    "sed_offset_err": sed_err,
                    "error_floor_mag": floor,
                    "error_floor_err": floor_err,
                }
                for band, (sed, sed_err, floor, floor_err) in survey_terms.items()
            ],
        )
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


def survey_terms(
    conn: Connection, version_id: int, bands: Sequence[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sed offsets (B,), error floors (B,))`` of a version in ``bands`` order, or None
    when the version stores no survey-wide terms (made before issue #12, or by hand)."""
    rows = conn.execute(
        select(
            CalibrationSurveyTerm.band,
            CalibrationSurveyTerm.sed_offset_mag,
            CalibrationSurveyTerm.error_floor_mag,
        ).where(CalibrationSurveyTerm.calibration_version_id == version_id)
    ).all()
    if not rows:
        return None
    sed, floor = np.zeros(len(bands)), np.full(len(bands), np.nan)
    index = {b: i for i, b in enumerate(bands)}
    for band, offset, value in rows:
        if band in index:
            sed[index[band]], floor[index[band]] = offset, value
    return sed, floor


#: ``{tract: (zeropoint offsets (B,), noise scales (B,))}`` of one calibration version.
CalibrationTerms = dict[int, tuple[np.ndarray, np.ndarray]]


class CalibrationManager:
    """Calibration versions: store them, and read back what a run's likelihood needs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, conn: Connection, name: str, terms: Any, method: str,
               provenance: dict[str, Any], parent_id: int | None = None,
               survey_terms: Any = None) -> int:  # fmt: skip
        """Store a version (see :func:`create_calibration_version` for the term layout)."""
        return create_calibration_version(
            conn, name, terms, method, provenance, parent_id, survey_terms
        )

    def terms(
        self, conn: Connection, calibration_version_id: int | None, bands: Sequence[str]
    ) -> CalibrationTerms | None:
        """A version's per-tract terms in ``bands`` order; None when none is pinned."""
        if calibration_version_id is None:
            return None
        return terms_by_tract(conn, calibration_version_id, bands)

    def model_error(
        self, conn: Connection, calibration_version_id: int | None, emulator: Any
    ) -> tuple[ModelError, np.ndarray | None]:
        """The model error a run's likelihood carries -- the emulator's measured error plus
        the version's fitted floors (the default floor without them) -- and the version's
        survey-wide SED offsets (None without them)."""
        from lor.inference.model_error import DEFAULT_FLOOR_MAG, ModelError

        bands = list(emulator.band_names)
        stored = None if calibration_version_id is None else survey_terms(
            conn, calibration_version_id, bands
        )  # fmt: skip
        if stored is None:
            return ModelError.for_emulator(emulator), None
        sed, floor = stored  # a band the version has no floor for keeps the default
        return ModelError.for_emulator(
            emulator, np.where(np.isfinite(floor), floor, DEFAULT_FLOOR_MAG)
        ), sed
