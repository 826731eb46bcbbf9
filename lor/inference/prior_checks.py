"""A population prior against published deep-field facts (``lor bench prior``, tests).

Why: a prior is only "grounded" if the galaxies it predicts look like the sky. Its
selected population, simulated through the emulator and lor's LSST 10-year data model
(:func:`lor.inference.simulate.simulate_catalog`'s observation model), is compared with

* the i-band cumulative number counts, LSST Science Book v2.0 (2009, arXiv:0912.0201),
  Sec. 3.7.2, Eq. 3.7: ``N(<i) = 46 x 10**(0.31 (i - 25))`` galaxies per arcmin^2
  (20.5 < i < 25.5). A family with an absolute normalization (the ``"grounded"`` prior: a
  stellar-mass function in Mpc^-3 dex^-1 times comoving volume) predicts
  ``N(<i) = n_box P(i_obs < i)``, ``n_box`` its galaxies per arcmin^2 in the box; a
  family without one (``"population"`` v1) predicts only the shape;
* the redshift distribution of the selected galaxies, LSST Science Book Eq. 3.8:
  ``p(z) ∝ z**2 exp(-z / z0)``, ``z0 = 0.0417 i - 0.744``, whose median is 2.674 z0 and
  90th percentile 5.322 z0 (a Gamma(3) distribution) -- at i < 25.3, 0.83 and 1.66;
* the median 30-band photometric redshift in bins of i in COSMOS (Ilbert et al. 2009, ApJ
  690, 1236, abstract and Sec. 6): 0.66 at 22 < i < 22.5 rising to 1.06 at 24.5 < i < 25 --
  a deep-field measurement beside the Science Book's fit, which rests on shallower data;
* the surface density of z ~ 3 galaxies: ~3 Lyman-break candidates per arcmin^2 to R = 25.5
  (Boutsia et al. 2014, A&A, arXiv:1403.0727: U-dropouts, completeness >= 95%; Steidel et
  al. 2003, ApJ 592, 728, found 2,347 in 0.38 deg^2, 1.7 arcmin^-2). Colour selection keeps
  most, not all, galaxies of 2.7 < z < 3.4, so a prior should predict somewhat more there
  (lor's r band stands in for R). It tests the high-redshift tail that Eq. 3.8's simple form
  does not follow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lor.inference.data_model import DataModel
from lor.inference.prior import PopulationPrior
from lor.inference.simulate import observed_mag

if TYPE_CHECKING:
    from lor.emulators.protocol import Emulator

LSST_COUNTS_AT_25 = 46.0  # galaxies per arcmin^2 brighter than i = 25 (Science Book Eq. 3.7)
LSST_COUNTS_SLOPE = 0.31  # dex per mag
GAMMA3_MEDIAN, GAMMA3_P90 = 2.674, 5.322  # quantiles of z**2 exp(-z) (Science Book Eq. 3.8)
COSMOS_BIN_MEDIAN_Z = {(22.0, 22.5): 0.66, (24.5, 25.0): 1.06}  # Ilbert et al. 2009
LBG_COUNTS = {"band": "r", "mag_max": 25.5, "z": (2.7, 3.4), "per_arcmin2": 3.0}
"""Lyman-break galaxies at z ~ 3 (Boutsia et al. 2014; see the module docstring)."""


def lsst_counts(mag: float) -> float:
    """Galaxies per arcmin^2 brighter than i = ``mag`` (Science Book Eq. 3.7)."""
    return LSST_COUNTS_AT_25 * 10.0 ** (LSST_COUNTS_SLOPE * (mag - 25.0))


def lsst_z0(mag: float) -> float:
    """``z0`` of Science Book Eq. 3.8 for galaxies brighter than i = ``mag``."""
    return 0.0417 * mag - 0.744


def published_figures(mag_max: float = 25.3) -> dict[str, float]:
    """The published figures at the depth cut ``mag_max``."""
    z0 = lsst_z0(mag_max)
    return {
        "counts_per_arcmin2": lsst_counts(mag_max),
        "median_z": GAMMA3_MEDIAN * z0,
        "p90_z": GAMMA3_P90 * z0,
        "lbg_per_arcmin2": LBG_COUNTS["per_arcmin2"],
    } | {f"cosmos_median_z_{lo:g}_{hi:g}": z for (lo, hi), z in COSMOS_BIN_MEDIAN_Z.items()}


def predicted_figures(
    prior: PopulationPrior,
    emulator: Emulator,
    n_draws: int = 200_000,
    seed: int = 0,
    mags: tuple[float, ...] = (23.0, 24.0, 25.0, 25.3),
) -> dict[str, Any]:
    """What ``prior`` predicts for a 10-year LSST survey: the selected population's median
    and 90th-percentile redshift and median i (at the prior's own cut), its acceptance, and
    the cumulative counts N(<i) at ``mags`` when the family has an absolute normalization.

    ``n_draws`` prior draws are observed once; the observed-i cut decides selection, as
    :func:`lor.inference.simulate.simulate_catalog` does.
    """
    rng = np.random.default_rng(seed)
    theta = prior.sample(n_draws, seed)
    data_model = DataModel(bands=emulator.band_names)
    flux, _ = data_model.observe(emulator.fluxes_njy(theta), rng, np.full(n_draws, 10.0))
    band = emulator.band_names.index(prior.selection["band"])
    mag = observed_mag(flux[:, band])
    keep = mag < float(prior.selection["mag_max"])
    z = theta[keep, 0]
    out: dict[str, Any] = {
        "family": prior.family,
        "family_version": prior.family_version,
        "n_draws": n_draws,
        "n_selected": int(keep.sum()),
        "acceptance": float(keep.mean()),
        "median_z": float(np.median(z)),
        "p90_z": float(np.percentile(z, 90)),
        "median_i": float(np.median(mag[keep])),
        "frac_z_below_0p3": float(np.mean(z < 0.3)),
        "frac_z_above_2p5": float(np.mean(z > 2.5)),
    }
    for lo, hi in COSMOS_BIN_MEDIAN_Z:
        in_bin = (mag >= lo) & (mag < hi)
        out[f"median_z_{lo:g}_{hi:g}"] = float(np.median(theta[in_bin, 0]))
    density = getattr(prior, "surface_density", None)
    if density is not None:
        n_box = density()
        out["box_per_arcmin2"] = n_box
        out["counts_per_arcmin2"] = {f"{m:g}": n_box * float(np.mean(mag < m)) for m in mags}
        out["counts_poisson_rel_err"] = {
            f"{m:g}": 1.0 / np.sqrt(max(int(np.sum(mag < m)), 1)) for m in mags
        }
        z_all, (z_lo, z_hi) = theta[:, 0], LBG_COUNTS["z"]
        lbg_mag = observed_mag(flux[:, emulator.band_names.index(LBG_COUNTS["band"])])
        lbg = (lbg_mag < LBG_COUNTS["mag_max"]) & (z_all > z_lo) & (z_all < z_hi)
        out["lbg_per_arcmin2"] = n_box * float(lbg.mean())
    return out


def compare_with_published(predicted: dict[str, Any], mag_max: float = 25.3) -> dict[str, Any]:
    """Ratios and differences of a prior's figures to the published ones at ``mag_max``."""
    published = published_figures(mag_max)
    out: dict[str, Any] = {
        "published": published,
        "median_z_minus_lsst": predicted["median_z"] - published["median_z"],
        "p90_z_minus_lsst": predicted["p90_z"] - published["p90_z"],
    }
    for lo, hi in COSMOS_BIN_MEDIAN_Z:
        key = f"median_z_{lo:g}_{hi:g}"
        out[f"{key}_minus_cosmos"] = predicted[key] - published[f"cosmos_{key}"]
    counts = predicted.get("counts_per_arcmin2")
    if counts:
        out["counts_ratio"] = {m: c / lsst_counts(float(m)) for m, c in counts.items()}
        out["lbg_ratio"] = predicted["lbg_per_arcmin2"] / published["lbg_per_arcmin2"]
    return out
