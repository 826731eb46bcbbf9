"""Amortized inference for a batch of catalog objects: photometry -> posteriors + flags.

Pure (no database): :class:`PhotometryPosteriors` takes arrays and returns stored parameters,
the 24 summary columns and flag bits; :mod:`lor.runs.processing` wraps it as a run's
processor. Order of work per batch: drop unusable bands (flagged), undo Galactic extinction,
apply the run's calibration (zeropoint offsets, noise scales), one network pass, summaries,
then the OOD checks (input density, prior edges, posterior-predictive chi-square).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lor import seeds
from lor.emulators.protocol import Emulator
from lor.errors import ConfigError
from lor.inference.data_model import DataModel
from lor.inference.derived import LEADING_PARAMS, derived_quantities
from lor.inference.flags import Flag
from lor.inference.input_density import InputDensity
from lor.inference.model_error import ModelError
from lor.inference.protocol import Estimator

EDGE_FRACTION = 0.01
EDGE_MASS_LIMIT = 0.2
CHI2_DRAWS = 8
SUMMARY_POINTS_SEED = 20261125
"""Scrambling seed of the Sobol set whose points every object's log SFR draws share."""
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
    featurize: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    """The estimator's :meth:`~lor.inference.protocol.Estimator.input_features`."""

    @property
    def usable_rows(self) -> np.ndarray:
        return ~self.unusable.all(axis=1)

    def features(self, rows: np.ndarray) -> np.ndarray:
        """The estimator's input features of ``rows``."""
        return self.featurize(self.flux[rows], self.err[rows], self.unusable[rows])


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
        estimator: Estimator,
        emulator: Emulator,
        n_summary_samples: int = 64,
        fallback_prior=None,  # type: ignore[no-untyped-def]  # PopulationPrior: MCMC for flagged objects
        fallback_steps: dict[str, int] | None = None,
        model_error: ModelError | None = None,
    ) -> None:  # type: ignore[no-untyped-def]
        self.estimator = estimator
        self.emulator = emulator
        self.model_error = model_error or ModelError.for_emulator(emulator)
        if self.model_error.bands != tuple(estimator.band_names):
            raise ConfigError(
                f"model error bands {self.model_error.bands} differ from the estimator's "
                f"{tuple(estimator.band_names)}"
            )
        self.rep = estimator.representation
        self.bands = estimator.band_names
        self.data_model = DataModel(bands=self.bands)
        if n_summary_samples < 2 or n_summary_samples & (n_summary_samples - 1):
            raise ConfigError(f"n_summary_samples must be a power of two, not {n_summary_samples}")
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
        b = len(self.bands)
        n_features = self.estimator.input_features(
            np.ones((1, b)), np.ones((1, b)), np.zeros((1, b), bool)
        ).shape[1]
        while size <= CHUNK:
            self.estimator.posterior_params(np.zeros((size, n_features), np.float32))
            self.emulator.predict(np.tile(centre, (size, 1)))
            size *= 2
        # and the one-off tables (extinction, age of the universe)
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
        Galactic extinction undone, the calibration's zeropoints and noise scales applied,
        and the model error (:mod:`lor.inference.model_error`) added to every error."""
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
        err = np.where(unusable, 1.0, self.model_error.effective_error(flux, err))
        flags[unusable.all(axis=1)] |= Flag.NO_POSTERIOR
        return PreparedPhotometry(flux, err, unusable, flags, self.estimator.input_features)

    def infer(
        self,
        flux: np.ndarray,
        flux_err: np.ndarray,
        missing_bits: np.ndarray | None = None,
        ebv: np.ndarray | None = None,
        zeropoint_offset: np.ndarray | None = None,
        noise_scale: np.ndarray | None = None,
        seed: int | np.ndarray = 0,
        exact_fit: bool = False,
    ) -> InferenceResult:
        """Posteriors, summaries and flags of a batch of catalog photometry.

        ``seed``: ``(N,)`` uint64 per-object keys (:func:`lor.seeds.object_keys`), so every
        output of a row is independent of the batch it came in; or an integer, which keys
        row ``i`` by ``(seed, i)``. ``exact_fit``: compute every object's fit statistic to
        its minimum instead of stopping once it passes (see :meth:`_reduced_chi2`).
        """
        data = self.prepare(flux, flux_err, missing_bits, ebv, zeropoint_offset, noise_scale)
        n = len(data.flux)
        keys = seeds.as_keys(seed, n)
        flags = data.flags.copy()
        params = np.full((n, self.rep.floats_per_object), np.nan, np.float32)
        summaries: dict[str, np.ndarray] = {}
        chi2 = np.full(n, np.nan)
        density = np.full(n, np.nan)
        rows = np.flatnonzero(data.usable_rows)
        if len(rows):
            params[rows] = self.estimator.posterior_params(data.features(rows))
            summaries, checks = self.summaries_and_checks(
                params, data, rows, keys, exact_fit=exact_fit
            )
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
                    keys[redo],
                )
                params[redo] = new
                s = self.summaries(new)
                for k, v in s.items():
                    summaries[k][redo] = v
                flags[redo] |= Flag.FALLBACK
                method[redo] = "mcmc"
        return InferenceResult(params, summaries, flags, method, chi2, density)

    def summaries_and_checks(
        self,
        params: np.ndarray,
        data: PreparedPhotometry,
        rows: np.ndarray,
        seed: int | np.ndarray,
        check_data: np.ndarray | None = None,
        exact_fit: bool = False,
    ) -> tuple[dict[str, np.ndarray], PosteriorChecks]:
        """Summary columns (NaN outside ``rows``) and the posterior checks of ``params[rows]``
        against the prepared photometry: prior edge, posterior-predictive fit, input density.

        ``seed`` keys the fit check's draws: per-object keys over all ``len(data.flux)``
        rows, or an integer (see :meth:`infer`).

        ``check_data`` (bool over ``rows``, default all) picks the rows whose fit and input
        density are checked; the others' are left to the caller (a reprocess run carries
        them over from the parent posterior when the likelihood did not change).
        """
        n = len(data.flux)
        keys = seeds.as_keys(seed, n)
        p = params[rows]
        s = self.summaries(p)
        summaries = {k: np.full(n, np.nan) for k in s}
        for k, v in s.items():
            summaries[k][rows] = v
        checks = PosteriorChecks(np.zeros(n, np.int32), np.full(n, np.nan), np.full(n, np.nan))
        checks.flags[rows] |= self._edge_flags(p)
        if check_data is not None:
            rows, p = rows[check_data], p[check_data]
        stop = np.inf if exact_fit else self._chi2_threshold
        chi2 = self._reduced_chi2(
            p, data.flux[rows], data.err[rows], data.unusable[rows], keys[rows], stop
        )
        checks.reduced_chi2[rows] = chi2
        checks.flags[rows[chi2 > self._chi2_threshold]] |= Flag.POOR_FIT
        complete = rows[~data.unusable[rows].any(axis=1)]
        if self._input_density is not None and len(complete):
            features = self.estimator.standardized(data.features(complete))
            dens = self._input_density(features[:, : self._input_density.n_features])
            checks.input_log_density[complete] = dens
            checks.flags[complete[dens < self._density_threshold]] |= Flag.INPUT_OOD
        return summaries, checks

    def mcmc(
        self, params: np.ndarray, flux: np.ndarray, err: np.ndarray, seed: int | np.ndarray
    ) -> np.ndarray:
        """Posteriors by MCMC (emulator likelihood x prior), compressed to the stored form.

        With per-object keys as ``seed`` every object's walkers start and move on its own
        streams (:data:`lor.seeds.MCMC_START`, :data:`lor.seeds.MCMC_STEPS`).
        """
        from lor.inference.mcmc import mcmc_posterior_samples

        samples, _ = mcmc_posterior_samples(
            self.emulator,
            self.fallback_prior,
            self.rep,
            params,
            flux,
            err,
            seed=seed,
            **self.fallback_steps,
        )
        return self.rep.encode(samples).astype(np.float32)

    def summaries(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """The 24 summary columns: redshift and mass analytic, log SFR from posterior draws
        at a fixed scrambled Sobol set shared by every object (:meth:`sample_points`), so
        the columns are a deterministic function of the posterior."""
        from lor.posteriors.base import SUMMARY_QUANTILES
        from lor.posteriors.sample_stats import sample_summary

        summaries = self.rep.summaries(params, None)
        theta = self.rep.sample_at(params, self.sample_points(), LEADING_PARAMS)
        n, s, d = theta.shape
        sfr = derived_quantities(theta.reshape(n * s, d))["log_sfr"].reshape(n, s)
        summaries |= {f"log_sfr_{k}": v for k, v in sample_summary(sfr, SUMMARY_QUANTILES).items()}
        return summaries

    def sample_points(self) -> np.ndarray:
        """The unit-cube points ``(n_summary_samples, 1 + LEADING_PARAMS)`` of the log SFR
        draws: a component coordinate, then one per parameter that log SFR reads."""
        return _sobol_points(self.n_summary_samples, 1 + LEADING_PARAMS)

    def edge_statistic(self, params: np.ndarray) -> np.ndarray:
        """Largest posterior mass within 1% of a box edge, over parameters (the
        representation's :meth:`~lor.posteriors.base.PosteriorRepresentation.edge_mass`).

        Edges where the population itself piles up are left out: any stellar mass (an exact
        magnitude shift, bounded only for bookkeeping) and dust-free ``av = 0``.
        """
        low, high = self.rep.edge_mass(params, EDGE_FRACTION)
        low[:, self._mass_col] = high[:, self._mass_col] = 0.0
        low[:, self._av_col] = 0.0
        return (low + high).max(axis=1)

    def _edge_flags(self, params: np.ndarray) -> np.ndarray:
        stat = self.edge_statistic(params)
        return np.where(stat > self._edge_threshold, int(Flag.PRIOR_EDGE), 0).astype(np.int32)

    def _reduced_chi2(
        self,
        params: np.ndarray,
        flux: np.ndarray,
        err: np.ndarray,
        unusable: np.ndarray,
        keys: np.ndarray,
        threshold: float = np.inf,
    ) -> np.ndarray:
        """Posterior-predictive fit: the smallest chi-square per usable band over a few points
        of the posterior (its :meth:`~lor.posteriors.base.PosteriorRepresentation.candidates`,
        e.g. the K component centres heaviest first, then CHI2_DRAWS draws).

        One point estimate is a poor test for bright objects, whose S/N of hundreds turns
        any parameter offset inside the posterior into a huge chi-square. Candidates are
        tried in stages and an object leaves as soon as one fits below ``threshold``: the
        flag (minimum above the threshold) is exactly that of the full minimum, for about a
        third of the emulator calls; the draws are made only for objects still open then.
        Objects that pass report the first fitting value, so the exact minimum for every
        object needs ``threshold=inf`` (as when thresholds are set on held-out simulations).
        The draws come from each object's own stream (``keys``, :data:`lor.seeds.FIT_CHECK`).
        """
        centres = self.rep.candidates(params)
        n_used = np.maximum((~unusable).sum(axis=1), 1)
        best = np.full(len(params), np.inf)
        open_rows = np.arange(len(params))
        k = centres.shape[1]
        for stage in (slice(0, 1), slice(1, k), None):
            if not len(open_rows):
                break
            if stage is None:
                draw_keys = seeds.stream_keys(keys[open_rows], seeds.FIT_CHECK)
                points = self.rep.sample(params[open_rows], CHI2_DRAWS, draw_keys)
            else:
                points = centres[open_rows, stage]
            n, m, d = points.shape
            flat = np.clip(points.reshape(n * m, d), self.emulator.box_lo, self.emulator.box_hi)
            model = self.emulator.fluxes_njy(flat).reshape(n, m, -1)
            resid = (flux[open_rows, None, :] - model) / err[open_rows, None, :]
            resid = np.where(unusable[open_rows, None, :], 0.0, resid)
            chi2 = (resid**2).sum(axis=2).min(axis=1) / n_used[open_rows]
            best[open_rows] = np.minimum(best[open_rows], chi2)
            open_rows = open_rows[best[open_rows] > threshold]
        return best


@lru_cache(maxsize=4)
def _sobol_points(n: int, dims: int) -> np.ndarray:
    """``n`` (a power of two) points of a scrambled Sobol sequence in ``dims`` dimensions."""
    from scipy.stats import qmc

    return qmc.Sobol(dims, scramble=True, seed=SUMMARY_POINTS_SEED).random_base2(n.bit_length() - 1)


def flag_thresholds(
    engine: PhotometryPosteriors, flux: np.ndarray, err: np.ndarray, quantile: float = 0.995
) -> dict[str, float]:
    """Poor-fit and prior-edge thresholds that flag ``1 - quantile`` of in-distribution objects.

    The fit statistic must be the exact minimum for every object here, so passing objects
    do not stop early (``exact_fit``).
    """
    result = engine.infer(flux, err, exact_fit=True)
    rows = np.isfinite(result.reduced_chi2)
    return {
        "chi2_threshold": float(np.quantile(result.reduced_chi2[rows], quantile)),
        "edge_threshold": float(np.quantile(engine.edge_statistic(result.params[rows]), quantile)),
    }
