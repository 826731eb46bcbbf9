"""Out-of-distribution and quality flags: one bit, one meaning (stored in posteriors.ood_flags).

A flagged object still gets a row; nothing is silently dropped. Thresholds that need data
are set on held-out simulations when a model is trained and stored in its artifact.
"""

from __future__ import annotations

from enum import IntFlag


class Flag(IntFlag):
    BAD_INPUT = 1
    """Some band had NaN/inf flux, a non-positive or non-finite error: it was not used."""
    MISSING_BANDS = 2
    """Some band has no measurement (missing in the catalog); the posterior uses the rest."""
    NO_POSTERIOR = 4
    """No usable band at all: the row has no posterior (method 'none')."""
    INPUT_OOD = 8
    """The photometry lies outside the estimator's training distribution (input density
    below the threshold that flags 0.5% of held-out in-distribution simulations)."""
    PRIOR_EDGE = 16
    """More than 20% of posterior mass lies within 1% of an edge of the parameter box
    (log_mstar excepted): the data want parameters the model was not built for."""
    POOR_FIT = 32
    """Posterior-predictive chi-square (emulator fluxes at the posterior's best component
    against the data) above the 99.5th percentile of held-out simulations."""
    LOW_ESS = 64
    """Importance reweighting kept too few effective samples (reprocessing)."""
    FALLBACK = 128
    """The posterior came from the fallback method (MCMC), not the amortized estimator."""
    UNCALIBRATED_TRACT = 256
    """The object's tract has no term in the pinned calibration version (used as is)."""
