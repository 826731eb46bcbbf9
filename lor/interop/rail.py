"""lor as a RAIL estimator: ``LorInformer`` points at a lor model bundle, ``LorEstimator`` runs
it on a catalog and returns a ``qp`` ensemble, so lor can be compared and chained with other
photo-z codes in LSST DESC's RAIL (``pip install 'lor[interop]'`` brings ``pz-rail-base``).

The estimator is lor's own amortized path (:class:`lor.inference.amortized.PhotometryPosteriors`:
the shipped or a given estimator and emulator, sha256-verified, with OOD flags), the same one
``lor process`` runs, without a database. The redshift marginal of lor's posterior is a
Gaussian mixture in logit(z), which qp's Gaussian mixture class (in z) cannot hold exactly,
so each is evaluated on RAIL's grid (``zmin``, ``zmax``, ``nzbins``) into a ``qp.interp``
ensemble. lor's summaries (redshift mean and quantiles, stellar mass, SFR), its OOD flags
and the representation parameters are ancillary data; an object without a posterior (no
usable band) gets a flat PDF and the ``NO_POSTERIOR`` flag, so the output stays aligned with
the input rows.

Input columns: fluxes in nJy (``units="njy"``, Rubin Object-table names by default, as in
lor's example catalog) or AB magnitudes (``units="abmag"``, e.g. RAIL's ``mag_{band}_lsst``
and ``mag_err_{band}_lsst``), where NaN, 99 and -99 mean missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import qp
from ceci.config import StageParameter as Param
from rail.core.common_params import SharedParams
from rail.core.data import ModelHandle, TableHandle, TableLike
from rail.estimation.estimator import CatEstimator
from rail.estimation.informer import CatInformer

from lor.errors import ConfigError
from lor.units import abmag_to_njy

#: Ancillary columns copied from lor's summaries into the ensemble.
ANCIL_SUMMARIES = (
    "z_mean", "z_std", "z_q16", "z_q50", "z_q84", "log_mstar_q16", "log_mstar_q50",
    "log_mstar_q84", "log_sfr_q50",
)  # fmt: skip
_LN10_04 = 0.4 * np.log(10.0)


def model_bundle(
    estimator_dir: str = "", estimator_sha256: str = "", emulator_dir: str = "",
    emulator_sha256: str = "",
) -> dict[str, str]:  # fmt: skip
    """The lor model bundle a RAIL model file records: folders and sha256 of the estimator
    and emulator (the shipped pair when none is given). Both are verified here and again
    whenever they are loaded."""
    from lor.emulators.registry import SHIPPED_DIR as EMU_DIR
    from lor.emulators.registry import SHIPPED_EMULATOR, load_emulator
    from lor.inference.registry import SHIPPED_DIR, SHIPPED_ESTIMATOR, load_estimator

    if bool(estimator_dir) != bool(estimator_sha256) or bool(emulator_dir) != bool(emulator_sha256):
        raise ConfigError("give each model folder together with its sha256 (or neither)")
    bundle = {
        "estimator_dir": estimator_dir or str(SHIPPED_DIR / SHIPPED_ESTIMATOR[0]),
        "estimator_sha256": estimator_sha256 or SHIPPED_ESTIMATOR[1],
        "emulator_dir": emulator_dir or str(EMU_DIR / SHIPPED_EMULATOR[0]),
        "emulator_sha256": emulator_sha256 or SHIPPED_EMULATOR[1],
    }
    load_estimator(Path(bundle["estimator_dir"]), bundle["estimator_sha256"])
    load_emulator(Path(bundle["emulator_dir"]), bundle["emulator_sha256"])
    return bundle


class LorInformer(CatInformer):
    """Points a :class:`LorEstimator` at a lor model bundle (lor trains with ``lor train``;
    informing records and verifies which trained estimator and emulator to use)."""

    name = "LorInformer"
    entrypoint_function = "inform"
    config_options = CatInformer.config_options.copy()
    config_options.update(
        estimator_dir=Param(str, "", msg="lor estimator folder; empty: the shipped one"),
        estimator_sha256=Param(str, "", msg="sha256 of that estimator's artifact"),
        emulator_dir=Param(str, "", msg="lor emulator folder; empty: the shipped one"),
        emulator_sha256=Param(str, "", msg="sha256 of that emulator's artifact"),
    )

    def run(self) -> None:
        cfg = self.config
        self.add_data(
            "model",
            model_bundle(
                cfg.estimator_dir, cfg.estimator_sha256, cfg.emulator_dir, cfg.emulator_sha256
            ),
        )


class LorEstimator(CatEstimator):
    """lor's amortized SPS posteriors as a RAIL ``CatEstimator`` (qp ``interp`` output)."""

    name = "LorEstimator"
    entrypoint_function = "estimate"
    inputs = [("model", ModelHandle), ("input", TableHandle)]
    config_options = CatEstimator.config_options.copy()
    config_options.update(
        zmin=SharedParams.copy_param("zmin"),
        zmax=SharedParams.copy_param("zmax"),
        nzbins=SharedParams.copy_param("nzbins"),
        units=Param(str, "njy", msg="'njy' (fluxes) or 'abmag' (AB magnitudes)"),
        flux_template=Param(str, "{band}_cModelFlux", msg="flux/magnitude column per band"),
        err_template=Param(str, "{band}_cModelFluxErr", msg="error column per band"),
        ebv_column=Param(str, "", msg="Galactic E(B-V) column, if any"),
        id_col=Param(str, "objectId", msg="object id column, copied to the ancillary data"),
    )

    def __init__(self, args: Any, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self._posteriors: Any = None

    def open_model(self, **kwargs: Any) -> Any:
        model = super().open_model(**kwargs)
        if not isinstance(model, dict) or "estimator_sha256" not in model:
            raise ConfigError("LorEstimator needs the model a LorInformer writes")
        return model

    def _engine(self) -> Any:
        """lor's PhotometryPosteriors for the bundle: loaded, verified and compiled once."""
        if self._posteriors is None:
            from lor.emulators.registry import load_emulator
            from lor.inference.amortized import PhotometryPosteriors
            from lor.inference.registry import load_estimator

            m = self.model
            estimator = load_estimator(Path(m["estimator_dir"]), m["estimator_sha256"])
            emulator = load_emulator(Path(m["emulator_dir"]), m["emulator_sha256"])
            self._posteriors = PhotometryPosteriors(estimator, emulator)
        return self._posteriors

    def _photometry(self, data: TableLike, bands: list[str]) -> tuple[np.ndarray, ...]:
        cfg = self.config
        names = [(cfg.flux_template.format(band=b), cfg.err_template.format(band=b)) for b in bands]
        missing = [c for pair in names for c in pair if c not in data]
        if missing:
            raise ConfigError(f"input has no column(s) {missing} (templates {names[0]})")
        value = np.column_stack([np.asarray(data[f], np.float64) for f, _ in names])
        err = np.column_stack([np.asarray(data[e], np.float64) for _, e in names])
        if cfg.units == "abmag":
            bad = ~np.isfinite(value) | (np.abs(value) >= 98) | ~(err > 0) | (np.abs(err) >= 98)
            flux = abmag_to_njy(np.where(bad, 25.0, value))
            value, err = np.where(bad, np.nan, flux), np.where(bad, np.nan, flux * _LN10_04 * err)
        elif cfg.units != "njy":
            raise ConfigError(f"units must be 'njy' or 'abmag', not {cfg.units!r}")
        missing_bits = (~np.isfinite(value) | ~(err > 0)).astype(np.int64)
        bits = (missing_bits << np.arange(len(bands))).sum(axis=1)
        ebv = np.asarray(data[cfg.ebv_column], np.float64) if cfg.ebv_column else None
        return value.astype(np.float32), err.astype(np.float32), bits, ebv

    def _process_chunk(self, start: int, end: int, data: TableLike, first: bool) -> None:
        from lor.inference.flags import Flag

        post = self._engine()
        flux, err, bits, ebv = self._photometry(data, list(post.bands))
        result = post.infer(flux, err, bits, ebv, seed=start)
        grid = np.linspace(self.config.zmin, self.config.zmax, self.config.nzbins)
        params = np.asarray(result.params, np.float32)
        has = np.isfinite(params).all(axis=1)
        pdfs = np.full((len(params), grid.size), 1.0 / (grid[-1] - grid[0]))
        if has.any():
            pdfs[has] = post.rep.z_pdf(params[has], grid[None, :])
        ancil: dict[str, np.ndarray] = {
            name: np.asarray(result.summaries.get(name, np.full(len(params), np.nan)))
            for name in ANCIL_SUMMARIES
        }
        ancil["ood_flags"] = np.asarray(result.flags | np.where(has, 0, Flag.NO_POSTERIOR))
        ancil["lor_params"] = params
        ensemble = qp.Ensemble(qp.interp, data={"xvals": grid, "yvals": pdfs}, ancil=ancil)
        self._do_chunk_output(ensemble, start, end, first, data=data)
