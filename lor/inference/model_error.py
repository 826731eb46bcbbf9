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
    """Per-band fractional model error (magnitudes) of one band set."""

    bands: tuple[str, ...]
    emulator_mag: np.ndarray  # (B,) rms of the emulator against the forward model
    floor_mag: np.ndarray  # (B,) SED-model error floor, a calibration hyperparameter

    def __post_init__(self) -> None:
        for name in ("emulator_mag", "floor_mag"):
            value = np.asarray(getattr(self, name), np.float64)
            if value.shape != (len(self.bands),) or not np.all(np.isfinite(value) & (value >= 0)):
                raise ConfigError(f"model error {name} must be {len(self.bands)} values >= 0")
            object.__setattr__(self, name, value)

    @classmethod
    def for_emulator(
        cls, emulator, floor_mag: Sequence[float] | np.ndarray | float | None = None
    ) -> ModelError:  # type: ignore[no-untyped-def]
        """The emulator's measured per-band rms plus ``floor_mag`` (default
        :data:`DEFAULT_FLOOR_MAG`). Emulators without measured metrics add no term."""
        bands = tuple(emulator.band_names)
        rms = (emulator.spec.get("metrics") or {}).get("rms_mag") or {}
        emu = np.array([float(rms.get(b, 0.0)) for b in bands])
        floor = DEFAULT_FLOOR_MAG if floor_mag is None else floor_mag
        return cls(bands, emu, np.broadcast_to(np.asarray(floor, np.float64), emu.shape).copy())

    def with_floor(self, floor_mag: np.ndarray) -> ModelError:
        return ModelError(self.bands, self.emulator_mag, np.asarray(floor_mag, np.float64))

    @property
    def total_mag(self) -> np.ndarray:
        """``sqrt(emulator**2 + floor**2)`` per band, magnitudes."""
        return np.hypot(self.emulator_mag, self.floor_mag)

    def effective_error(self, flux: np.ndarray, err: np.ndarray) -> np.ndarray:
        """Flux errors (N, B) with the model term added in quadrature at ``|flux|``."""
        frac = self.total_mag / MAG_PER_FRACTION
        return np.sqrt(np.square(err) + np.square(np.abs(flux) * frac))

    def as_record(self) -> dict[str, list[float] | list[str]]:
        return {
            "bands": list(self.bands),
            "emulator_mag": [round(float(v), 6) for v in self.emulator_mag],
            "floor_mag": [round(float(v), 6) for v in self.floor_mag],
        }
