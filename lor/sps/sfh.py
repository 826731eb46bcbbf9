"""Age grids and the delayed-tau star-formation history, batched over objects.

The conventions follow bagpipes (Carnall et al. 2018), so that the composite spectra match:

* SSP ages are binned on ``log10(age / yr) = 6.0, 6.1, ...`` up to the age of the universe
  today; bin edges sit half-way (in log age) between the bin centres, the first edge is 0
  and the last is the age of the universe at ``z = 0``.
* The raw SSP spectra are averaged into those bins with weights equal to the overlap (in
  linear age) of each raw age interval with the bin.
* A star-formation history is evaluated at the centres of a fine grid (steps of 0.0025 dex
  in age from 1 Myr, edges half-way in log age), multiplied by the fine bin widths, normalized to unit mass formed, and summed
  into the SSP age bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SSP_LOG_AGE_START = 6.0
SSP_LOG_AGE_STEP = 0.1
FINE_LOG_AGE_STEP = 0.0025


def _bin_edges(midpoints: np.ndarray) -> np.ndarray:
    """Edges half-way between ``midpoints``; outer edges mirror the neighbouring half-width."""
    edges = np.empty(midpoints.size + 1)
    edges[1:-1] = 0.5 * (midpoints[1:] + midpoints[:-1])
    edges[0] = midpoints[0] - 0.5 * (midpoints[1] - midpoints[0])
    edges[-1] = midpoints[-1] + 0.5 * (midpoints[-1] - midpoints[-2])
    return edges


@dataclass(frozen=True)
class AgeGrid:
    """SSP age bins and the fine grid on which star-formation histories are integrated.

    Attributes
    ----------
    ages
        SSP age-bin centres (yr), shape ``(A,)``.
    edges
        SSP age-bin edges (yr), shape ``(A + 1,)``; ``edges[0] = 0``,
        ``edges[-1]`` = age of the universe today.
    fine_ages
        Centres of the fine SFH grid (yr), shape ``(F,)``.
    fine_widths
        Widths of the fine bins (yr), shape ``(F,)``.
    fine_to_ssp
        ``(F, A)`` 0/1 matrix assigning each fine bin (by its centre) to an SSP age bin.
    """

    ages: np.ndarray
    edges: np.ndarray
    fine_ages: np.ndarray
    fine_widths: np.ndarray
    fine_to_ssp: np.ndarray

    @classmethod
    def for_age_of_universe(cls, age_today_yr: float) -> AgeGrid:
        """Build the grids for a cosmology whose universe is ``age_today_yr`` old today."""
        log_age_today = np.log10(age_today_yr)
        log_ages = np.arange(SSP_LOG_AGE_START, log_age_today, SSP_LOG_AGE_STEP)
        edges = 10 ** _bin_edges(log_ages)
        edges[0] = 0.0
        edges[-1] = age_today_yr
        ages = 10**log_ages

        log_fine = np.arange(
            SSP_LOG_AGE_START, log_age_today + 2 * FINE_LOG_AGE_STEP, FINE_LOG_AGE_STEP
        )
        fine_edges = 10 ** _bin_edges(log_fine)
        fine_edges[0] = 0.0
        fine_edges[-1] = age_today_yr
        fine_ages = 10**log_fine
        fine_widths = np.diff(fine_edges)

        # np.histogram semantics: bins closed on the left, the last one on both sides.
        index = np.searchsorted(edges, fine_ages, side="right") - 1
        index[fine_ages == edges[-1]] = ages.size - 1
        inside = (index >= 0) & (index < ages.size)
        fine_to_ssp = np.zeros((fine_ages.size, ages.size))
        fine_to_ssp[np.flatnonzero(inside), index[inside]] = 1.0
        return cls(ages, edges, fine_ages, fine_widths, fine_to_ssp)

    @property
    def widths(self) -> np.ndarray:
        """Widths of the SSP age bins (yr)."""
        return np.diff(self.edges)

    def birth_cloud_split(self, t_bc_yr: float) -> tuple[int, float]:
        """Where the birth-cloud age ``t_bc_yr`` falls in the SSP age bins.

        Returns
        -------
        n_young : int
            Number of bins with some mass younger than ``t_bc_yr``: bins ``[0, n_young)``;
            bin ``n_young - 1`` contains ``t_bc_yr``.
        old_fraction : float
            Fraction of bin ``n_young - 1`` older than ``t_bc_yr``.
        """
        n_young = int(np.count_nonzero(self.edges < t_bc_yr))
        old_fraction = float((self.edges[n_young] - t_bc_yr) / self.widths[n_young - 1])
        return n_young, old_fraction

    def rebin_matrix(self, raw_ages: np.ndarray) -> np.ndarray:
        """``(A, R)`` matrix averaging spectra at ``raw_ages`` into the SSP age bins.

        Raw age intervals are half-way between the raw ages, the first starting at 0 and
        the last extended to the age of the universe today if it ends before. Row ``j``
        holds the overlap of each raw interval with SSP bin ``j``, normalized to sum to 1.
        """
        raw_edges = _bin_edges(np.asarray(raw_ages, dtype=np.float64))
        raw_edges[0] = 0.0
        raw_edges[-1] = max(raw_edges[-1], self.edges[-1])
        lo = np.maximum(self.edges[:-1, None], raw_edges[None, :-1])
        hi = np.minimum(self.edges[1:, None], raw_edges[None, 1:])
        overlap = np.clip(hi - lo, 0.0, None)
        return overlap / overlap.sum(axis=1, keepdims=True)

    def delayed_tau_weights(self, age_yr: np.ndarray, tau_yr: np.ndarray) -> np.ndarray:
        """Mass formed in each SSP age bin by a unit-mass delayed-tau history.

        ``SFR(t) ~ t exp(-t / tau)`` with ``t`` the time since star formation began, which
        was ``age_yr`` ago.

        Parameters
        ----------
        age_yr, tau_yr
            Shape ``(N,)``, years.

        Returns
        -------
        numpy.ndarray
            ``(N, A)``, each row summing to 1 (rows are all zero when ``age_yr`` is below
            the first fine age, 1 Myr; callers reject those).
        """
        # SFR is evaluated only at fine ages strictly below age_yr (t > 0); clipping t at 0
        # makes it vanish elsewhere. In-place steps keep this (N, F) pass memory-light.
        t = np.subtract(age_yr[:, None], self.fine_ages[None, :])
        np.maximum(t, 0.0, out=t)
        mass = np.divide(t, -tau_yr[:, None])
        np.exp(mass, out=mass)
        mass *= t
        mass *= self.fine_widths[None, :]
        per_bin = mass @ self.fine_to_ssp
        total = mass.sum(axis=1, keepdims=True)
        return np.divide(per_bin, total, out=np.zeros_like(per_bin), where=total > 0)
