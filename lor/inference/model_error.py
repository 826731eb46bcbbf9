"""Model error: what every likelihood adds to a catalog's errors because the model is not exact.

Real catalogs are never drawn from lor's model. Two terms per band, both fractional (in
magnitudes), added in quadrature to each object's calibrated flux error:

* the **emulator's own error** against lor's exact forward model, measured on held-out
  forward-model draws when the emulator was trained (``spec["metrics"]["rms_mag"]``);
* an **error floor** of the SED model against real galaxies: a data-model hyperparameter,
  stored with the calibration version and fitted in Step 2
  (:func:`lor.hierarchy.survey.fit_survey`). pop-cosmos infers 0.2-3 per cent in broad bands
  (Leistedt et al. 2023, ApJS 264, 23; Alsing et al. 2024, ApJS 274, 12); EAZY's template
  error function and LePhare's systematic offsets play the same role for template codes.

The term is ``sigma_model = |f| ln(10) / 2.5 * sqrt(emulator**2 + floor**2)``, evaluated at
the *observed* (calibrated) flux, as EAZY does with its template error: the same effective
error then enters the amortized estimator (whose inputs are the errors; it is trained over
a broad range of error floors, :mod:`lor.inference.data_model`), the posterior-predictive
check, importance reweighting, the MCMC fallback and the data-space calibration fit, so all
of them share one likelihood. At LSST depths it matters only for bright objects, whose
photometric errors (0.005-0.02 mag) are smaller than the model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lor.errors import ConfigError

MAG_PER_FRACTION = 2.5 / np.log(10.0)
"""d(mag) / d(ln flux): a fractional flux error ``e`` is ``1.0857 e`` magnitudes."""

DEFAULT_FLOOR_MAG = 0.02
"""Error floor (mag, every band) until Step 2 fits one: the middle of pop-cosmos' 0.2-3%."""


@dataclass(frozen=True)
class ModelError:
    """Per-band fractional model error (magnitudes) of one band set.

    ``emulator_mag`` is the emulator's held-out rms over the whole training box. Emulators
    that also store a per-redshift error model (``spec["metrics"]["error_model"]``, kind
    ``redshift_bins``: :func:`lor.emulators.accuracy.error_model`) fill
    ``z_edges`` and ``emulator_mag_by_z``; likelihoods that know an object's (or a
    sample's) redshift use them through :meth:`emulator_mag_at` and the ``redshift``
    argument of :meth:`effective_error`. Without them every method is the per-band one.
    """

    bands: tuple[str, ...]
    emulator_mag: np.ndarray  # (B,) rms of the emulator against the forward model
    floor_mag: np.ndarray  # (B,) SED-model error floor, a calibration hyperparameter
    z_edges: np.ndarray | None = None  # (R + 1,) redshift bin edges of the error model
    emulator_mag_by_z: np.ndarray | None = None  # (R, B) rms in each redshift bin

    def __post_init__(self) -> None:
        for name in ("emulator_mag", "floor_mag"):
            value = np.asarray(getattr(self, name), np.float64)
            if value.shape != (len(self.bands),) or not np.all(np.isfinite(value) & (value >= 0)):
                raise ConfigError(f"model error {name} must be {len(self.bands)} values >= 0")
            object.__setattr__(self, name, value)
        if (self.z_edges is None) != (self.emulator_mag_by_z is None):
            raise ConfigError("a per-redshift model error needs both z_edges and its table")
        if self.z_edges is not None:
            edges = np.asarray(self.z_edges, np.float64)
            table = np.asarray(self.emulator_mag_by_z, np.float64)
            if (
                edges.ndim != 1
                or np.any(np.diff(edges) <= 0)
                or table.shape != (edges.size - 1, len(self.bands))
                or not np.all(np.isfinite(table) & (table >= 0))
            ):
                raise ConfigError(
                    f"per-redshift model error: increasing edges and a ({edges.size - 1}, "
                    f"{len(self.bands)}) table of values >= 0 expected, got {table.shape}"
                )
            object.__setattr__(self, "z_edges", edges)
            object.__setattr__(self, "emulator_mag_by_z", table)

    @classmethod
    def for_emulator(
        cls, emulator, floor_mag: Sequence[float] | np.ndarray | float | None = None
    ) -> ModelError:  # type: ignore[no-untyped-def]
        """The emulator's measured per-band rms (and its per-redshift error model when the
        artifact has one) plus ``floor_mag`` (default :data:`DEFAULT_FLOOR_MAG`).
        Emulators without measured metrics add no term."""
        bands = tuple(emulator.band_names)
        metrics = emulator.spec.get("metrics") or {}
        rms = metrics.get("rms_mag") or {}
        emu = np.array([float(rms.get(b, 0.0)) for b in bands])
        floor = DEFAULT_FLOOR_MAG if floor_mag is None else floor_mag
        edges, table = _redshift_error_model(metrics.get("error_model"), bands)
        return cls(
            bands,
            emu,
            np.broadcast_to(np.asarray(floor, np.float64), emu.shape).copy(),
            edges,
            table,
        )

    def with_floor(self, floor_mag: np.ndarray) -> ModelError:
        return ModelError(
            self.bands,
            self.emulator_mag,
            np.asarray(floor_mag, np.float64),
            self.z_edges,
            self.emulator_mag_by_z,
        )

    @property
    def total_mag(self) -> np.ndarray:
        """``sqrt(emulator**2 + floor**2)`` per band, magnitudes."""
        return np.hypot(self.emulator_mag, self.floor_mag)

    def emulator_mag_at(self, redshift: np.ndarray) -> np.ndarray:
        """The emulator's rms (N, B) at each redshift: its bin's value (the nearest bin
        outside the edges), or the per-band rms when the artifact has no error model."""
        z = np.atleast_1d(np.asarray(redshift, np.float64))
        if self.z_edges is None or self.emulator_mag_by_z is None:
            return np.broadcast_to(self.emulator_mag, (z.size, len(self.bands))).copy()
        which = np.searchsorted(self.z_edges, z, side="right") - 1
        return self.emulator_mag_by_z[np.clip(which, 0, self.z_edges.size - 2)]

    def total_mag_at(self, redshift: np.ndarray) -> np.ndarray:
        """``sqrt(emulator(z)**2 + floor**2)``, shape (N, B)."""
        return np.hypot(self.emulator_mag_at(redshift), self.floor_mag[None, :])

    def effective_error(
        self, flux: np.ndarray, err: np.ndarray, redshift: np.ndarray | None = None
    ) -> np.ndarray:
        """Flux errors (N, B) with the model term added in quadrature at ``|flux|``; with
        ``redshift`` (N,), the emulator term of each object's redshift bin."""
        total = self.total_mag if redshift is None else self.total_mag_at(redshift)
        frac = total / MAG_PER_FRACTION
        return np.sqrt(np.square(err) + np.square(np.abs(flux) * frac))

    def as_record(self) -> dict[str, list[float] | list[str]]:
        record: dict[str, list] = {
            "bands": list(self.bands),
            "emulator_mag": [round(float(v), 6) for v in self.emulator_mag],
            "floor_mag": [round(float(v), 6) for v in self.floor_mag],
        }
        if self.z_edges is not None and self.emulator_mag_by_z is not None:
            record["z_edges"] = [float(v) for v in self.z_edges]
            record["emulator_mag_by_z"] = self.emulator_mag_by_z.round(6).tolist()
        return record


def _redshift_error_model(
    model: dict | None, bands: tuple[str, ...]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(z_edges, (R, B) rms)`` from an artifact's ``error_model``, or ``(None, None)`` for
    artifacts without one (the shipped speculator) or of another kind."""
    if not model or model.get("kind") != "redshift_bins":
        return None, None
    rms = model["rms_mag"]
    missing = [b for b in bands if b not in rms]
    if missing:
        raise ConfigError(f"the emulator's error model lacks bands {missing}")
    table = np.array([rms[b] for b in bands], np.float64).T
    return np.asarray(model["z_edges"], np.float64), table
