"""Amortized inference for a batch of catalog objects: photometry -> posteriors + flags.

Pure (no database): :class:`PhotometryPosteriors` takes arrays and returns stored parameters,
the 24 summary columns and flag bits; :mod:`lor.pipeline.processing` wraps it as a run's
processor. Order of work per batch: drop unusable bands (flagged), undo Galactic extinction,
apply the run's calibration (zeropoint offsets, noise scales), one network pass, summaries,
then the OOD checks (input density, prior edges, posterior-predictive chi-square).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lor.inference.data_model import DataModel
from lor.inference.derived import derived_quantities
from lor.inference.estimator import AmortizedEstimator, input_features
from lor.inference.estimator_training import InputDensity
from lor.inference.flags import Flag

EDGE_FRACTION = 0.01
EDGE_MASS_LIMIT = 0.2
CHI2_DRAWS = 8
FALLBACK_TRIGGERS = Flag.INPUT_OOD | Flag.POOR_FIT | Flag.PRIOR_EDGE
"""Flags that send an object to the MCMC fallback (when the run asks for it)."""


@dataclass
class InferenceResult:
    params: np.ndarray  # (N, P) float32, NaN rows = no posterior
    summaries: dict[str, np.ndarray]
    flags: np.ndarray  # (N,) int32
    method: np.ndarray  # (N,) str
    reduced_chi2: np.ndarray  # (N,)
    input_log_density: np.ndarray  # (N,)


@dataclass
class PreparedPhotometry:
    """Photometry ready for the likelihood (see :meth:`PhotometryPosteriors.prepare`)."""

    flux: np.ndarray  # (N, B) nJy, dereddened and calibrated; 0 where unusable
    err: np.ndarray  # (N, B) nJy; 1 where unusable
    unusable: np.ndarray  # (N, B) bool: missing or bad
    flags: np.ndarray  # (N,) int32: BAD_INPUT, MISSING_BANDS, NO_POSTERIOR

    @property
    def usable_rows(self) -> np.ndarray:
        return ~self.unusable.all(axis=1)

    def features(self, rows: np.ndarray) -> np.ndarray:
        """The estimator's input features of ``rows``."""
        return input_features(self.flux[rows], self.err[rows], self.unusable[rows])


@dataclass
class PosteriorChecks:
    flags: np.ndarray  # (N,) int32: PRIOR_EDGE, POOR_FIT, INPUT_OOD
    reduced_chi2: np.ndarray  # (N,) NaN where not checked
    input_log_density: np.ndarray  # (N,) NaN where not checked


def band_mask(bits: np.ndarray, n_bands: int) -> np.ndarray:
    return (np.asarray(bits, np.int64)[:, None] >> np.arange(n_bands)) & 1 == 1


class PhotometryPosteriors:
    """Estimator + emulator + data model, applied to arrays of catalog photometry."""

    def __init__(
        self,
        estimator: AmortizedEstimator,
        emulator,
        n_summary_samples: int = 64,
        fallback_prior=None,  # type: ignore[no-untyped-def]  # PopulationPrior: MCMC for flagged objects
        fallback_steps: dict[str, int] | None = None,
    ) -> None:  # type: ignore[no-untyped-def]
        self.estimator = estimator
        self.emulator = emulator
        self.rep = estimator.representation
        self.bands = estimator.band_names
        self.data_model = DataModel(bands=self.bands)
        self.n_summary_samples = n_summary_samples
        self.fallback_prior = fallback_prior
        self.fallback_steps = fallback_steps or {"n_burn": 1000, "n_steps": 1000, "thin": 10}
        ood = estimator.ood
        self._density = {
            k[8:]: ood[k] for k in ood if k.startswith("density_") and k != "density_threshold"
        }
        self._density_threshold = float(ood.get("density_threshold", -np.inf))
        self._input_density = InputDensity(self._density) if self._density else None
        self._chi2_threshold = float(ood.get("chi2_threshold", np.inf))
        names = list(estimator.spec["param_names"])
        self._mass_col, self._av_col = names.index("log_mstar"), names.index("av")
        self._edge_threshold = max(
            float(ood.get("edge_threshold", EDGE_MASS_LIMIT)), EDGE_MASS_LIMIT
        )

    def warm_up(self) -> None:
        """Compile the network and emulator for every batch shape they will meet (see
        :func:`lor.batching.bucket_sizes`) and build the one-off tables, so no compile or
        table lands on a processed batch."""
        from lor.batching import CHUNK, SMALLEST_BUCKET

        size = SMALLEST_BUCKET
        centre = (0.5 * (self.emulator.box_lo + self.emulator.box_hi)).astype(np.float32)
        while size <= CHUNK:
            self.estimator.posterior_params(np.zeros((size, 3 * len(self.bands)), np.float32))
            self.emulator.predict(np.tile(centre, (size, 1)))
            size *= 2
        b = len(self.bands)  # and the one-off tables (extinction, age of the universe)
        self.infer(np.full((8, b), 1e3), np.full((8, b), 10.0), ebv=np.zeros(8))

    def prepare(
        self,
        flux: np.ndarray,
        flux_err: np.ndarray,
        missing_bits: np.ndarray | None = None,
        ebv: np.ndarray | None = None,
        zeropoint_offset: np.ndarray | None = None,
        noise_scale: np.ndarray | None = None,
    ) -> PreparedPhotometry:
        """Catalog photometry as the likelihood sees it: unusable bands dropped (and flagged),
        Galactic extinction undone, the calibration's zeropoints and noise scales applied."""
        flux = np.asarray(flux, np.float64)
        err = np.asarray(flux_err, np.float64)
        n, b = flux.shape
        flags = np.zeros(n, np.int32)
        missing = np.zeros((n, b), bool) if missing_bits is None else band_mask(missing_bits, b)
        bad = ~missing & (~np.isfinite(flux) | ~np.isfinite(err) | ~(err > 0))
        flags[bad.any(axis=1)] |= Flag.BAD_INPUT
        flags[missing.any(axis=1)] |= Flag.MISSING_BANDS
        unusable = missing | bad
        flux, err = np.where(unusable, 0.0, flux), np.where(unusable, 1.0, err)
        if ebv is not None:
            flux, err = self.data_model.deredden(flux, err, ebv)
        if zeropoint_offset is not None:
            factor = 10.0 ** (0.4 * np.nan_to_num(zeropoint_offset))
            flux, err = flux * factor, err * factor
        if noise_scale is not None:
            err = err * np.nan_to_num(noise_scale, nan=1.0)
        flags[unusable.all(axis=1)] |= Flag.NO_POSTERIOR
        return PreparedPhotometry(flux, err, unusable, flags)

    def infer(
        self,
        flux: np.ndarray,
        flux_err: np.ndarray,
        missing_bits: np.ndarray | None = None,
        ebv: np.ndarray | None = None,
        zeropoint_offset: np.ndarray | None = None,
        noise_scale: np.ndarray | None = None,
        seed: int = 0,
    ) -> InferenceResult:
        data = self.prepare(flux, flux_err, missing_bits, ebv, zeropoint_offset, noise_scale)
        n = len(data.flux)
        flags = data.flags.copy()
        params = np.full((n, self.rep.floats_per_object), np.nan, np.float32)
        summaries: dict[str, np.ndarray] = {}
        chi2 = np.full(n, np.nan)
        density = np.full(n, np.nan)
        rows = np.flatnonzero(data.usable_rows)
        if len(rows):
            params[rows] = self.estimator.posterior_params(data.features(rows))
            summaries, checks = self.summaries_and_checks(params, data, rows, seed)
            flags |= checks.flags
            chi2, density = checks.reduced_chi2, checks.input_log_density
        method = np.where(data.usable_rows, "amortized", "none").astype(object)
        if self.fallback_prior is not None:
            redo = np.flatnonzero(data.usable_rows & (flags & FALLBACK_TRIGGERS != 0))
            if len(redo):
                new = self.mcmc(
                    params[redo],
                    data.flux[redo],
                    np.where(data.unusable[redo], np.nan, data.err[redo]),
                    seed,
                )
                params[redo] = new
                s, _ = self.summaries(new, seed)
                for k, v in s.items():
                    summaries[k][redo] = v
                flags[redo] |= Flag.FALLBACK
                method[redo] = "mcmc"
        return InferenceResult(params, summaries, flags, method, chi2, density)

    def summaries_and_checks(
        self, params: np.ndarray, data: PreparedPhotometry, rows: np.ndarray, seed: int
    ) -> tuple[dict[str, np.ndarray], PosteriorChecks]:
        """Summary columns (NaN outside ``rows``) and the posterior checks of ``params[rows]``
        against the prepared photometry: prior edge, posterior-predictive fit, input density."""
        n = len(data.flux)
        p = params[rows]
        s, theta = self.summaries(p, seed)
        summaries = {k: np.full(n, np.nan) for k in s}
        for k, v in s.items():
            summaries[k][rows] = v
        checks = PosteriorChecks(np.zeros(n, np.int32), np.full(n, np.nan), np.full(n, np.nan))
        checks.flags[rows] |= self._edge_flags(theta)
        chi2 = self._reduced_chi2(
            p, theta, data.flux[rows], data.err[rows], data.unusable[rows], self._chi2_threshold
        )
        checks.reduced_chi2[rows] = chi2
        checks.flags[rows[chi2 > self._chi2_threshold]] |= Flag.POOR_FIT
        complete = rows[~data.unusable[rows].any(axis=1)]
        if self._input_density is not None and len(complete):
            dens = self._input_density(self.estimator.standardized(data.features(complete)))
            checks.input_log_density[complete] = dens
            checks.flags[complete[dens < self._density_threshold]] |= Flag.INPUT_OOD
        return summaries, checks

    def mcmc(self, params: np.ndarray, flux: np.ndarray, err: np.ndarray, seed: int) -> np.ndarray:
        """Posteriors by MCMC (emulator likelihood x prior), compressed to the stored form."""
        from lor.inference.validation import mcmc_reference

        samples, _ = mcmc_reference(
            self.emulator,
            self.fallback_prior,
            self.rep,
            params,
            flux,
            err,
            seed=seed,
            **self.fallback_steps,
        )
        return self.rep.fit(samples).astype(np.float32)

    def summaries(self, params: np.ndarray, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The 24 summary columns; one set of posterior draws serves log SFR and the edge check."""
        from lor.posteriors.base import SUMMARY_QUANTILES
        from lor.posteriors.sample_stats import sample_summary

        summaries = self.rep.summaries(params, None)
        theta = self.rep.sample(params, self.n_summary_samples, seed, np.float32)  # (N, S, D)
        n, s, d = theta.shape
        sfr = derived_quantities(theta.reshape(n * s, d))["log_sfr"].reshape(n, s)
        summaries |= {f"log_sfr_{k}": v for k, v in sample_summary(sfr, SUMMARY_QUANTILES).items()}
        return summaries, theta

    def edge_statistic(self, theta: np.ndarray) -> np.ndarray:
        """Largest fraction of posterior draws within 1% of a box edge, over parameters.

        Edges where the population itself piles up are left out: any stellar mass (an exact
        magnitude shift, bounded only for bookkeeping) and dust-free ``av = 0``.
        """
        lo, hi = self.rep.box_lo, self.rep.box_hi
        margin = EDGE_FRACTION * (hi - lo)
        low, high = theta < lo + margin, theta > hi - margin
        low[..., self._mass_col] = high[..., self._mass_col] = False
        low[..., self._av_col] = False
        return (low | high).mean(axis=1).max(axis=1)

    def _edge_flags(self, theta: np.ndarray) -> np.ndarray:
        stat = self.edge_statistic(theta)
        return np.where(stat > self._edge_threshold, int(Flag.PRIOR_EDGE), 0).astype(np.int32)

    def _reduced_chi2(
        self,
        params: np.ndarray,
        theta: np.ndarray,
        flux: np.ndarray,
        err: np.ndarray,
        unusable: np.ndarray,
        threshold: float = np.inf,
    ) -> np.ndarray:
        """Posterior-predictive fit: the smallest chi-square per usable band over a few points
        of the posterior (the K component centres, heaviest first, then the first draws).

        One point estimate is a poor test for bright objects, whose S/N of hundreds turns
        any parameter offset inside the posterior into a huge chi-square. Candidates are
        tried in stages and an object leaves as soon as one fits below ``threshold``: the
        flag (minimum above the threshold) is exactly that of the full minimum, for about a
        third of the emulator calls. Objects that pass report the first fitting value, so
        the exact minimum for every object needs ``threshold=inf`` (as when thresholds are
        set on held-out simulations).
        """
        logits, means, _ = self.rep.unpack(params)
        order = np.argsort(-np.asarray(logits), axis=1)
        centres = np.take_along_axis(np.asarray(means, np.float64), order[:, :, None], axis=1)
        candidates = np.concatenate([self.rep.to_theta(centres), theta[:, :CHI2_DRAWS]], axis=1)
        n_used = np.maximum((~unusable).sum(axis=1), 1)
        best = np.full(len(params), np.inf)
        open_rows = np.arange(len(params))
        for stage in (
            slice(0, 1),
            slice(1, self.rep.n_components),
            slice(self.rep.n_components, None),
        ):
            if not len(open_rows):
                break
            points = candidates[open_rows, stage]
            n, m, d = points.shape
            flat = np.clip(points.reshape(n * m, d), self.emulator.box_lo, self.emulator.box_hi)
            model = self.emulator.fluxes_njy(flat).reshape(n, m, -1)
            resid = (flux[open_rows, None, :] - model) / err[open_rows, None, :]
            resid = np.where(unusable[open_rows, None, :], 0.0, resid)
            chi2 = (resid**2).sum(axis=2).min(axis=1) / n_used[open_rows]
            best[open_rows] = np.minimum(best[open_rows], chi2)
            open_rows = open_rows[best[open_rows] > threshold]
        return best


def flag_thresholds(
    engine: PhotometryPosteriors, flux: np.ndarray, err: np.ndarray, quantile: float = 0.995
) -> dict[str, float]:
    """Poor-fit and prior-edge thresholds that flag ``1 - quantile`` of in-distribution objects.

    The fit statistic must be the exact minimum for every object here, so the engine's own
    threshold (which lets passing objects stop early) is lifted for this call.
    """
    saved, engine._chi2_threshold = engine._chi2_threshold, np.inf
    try:
        result = engine.infer(flux, err)
    finally:
        engine._chi2_threshold = saved
    rows = np.isfinite(result.reduced_chi2)
    theta = engine.rep.sample(result.params[rows], engine.n_summary_samples, 0, np.float32)
    return {
        "chi2_threshold": float(np.quantile(result.reduced_chi2[rows], quantile)),
        "edge_threshold": float(np.quantile(engine.edge_statistic(theta), quantile)),
    }
