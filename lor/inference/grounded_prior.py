"""A population prior built from published galaxy-evolution relations: family ``"grounded"`` v1.

Why: the Smail-form ``"population"`` prior puts the median redshift of ``i < 25.3`` galaxies
at 1.26 where deep fields measure ~0.85-0.9 (issue #12). This family takes each factor
from a measured relation, so its absolute number counts and redshift distribution are
predictions that can be checked (:mod:`lor.inference.prior_checks`), and its few
hyperparameters are shifts around the published values that Step 2 may fit.

Factors (parameters of :data:`lor.sps.parameters.PARAM_NAMES`, all truncated to the box):

* ``redshift``: ``p(z) = dV_c/dz(z) N(z) / C`` with ``N(z) = ∫_box Φ(M, z) dM``, comoving
  volumes of Planck18 (astropy's ``Planck18``, Planck Collaboration 2020, A&A 641, A6);
* ``log_mstar`` given z: ``Φ(M, z) / N(z)``, Φ the double-Schechter stellar-mass function
  of the continuity model of Leja et al. 2020 (ApJ 893, 111; its appendix gives the model): ``log
  phi1``, ``log phi2`` and ``log M*`` quadratic in z through their values at z = 0.2, 1.6,
  3.0, ``alpha1 = -0.28``, ``alpha2 = -1.48`` fixed (the median values that Prospector-β,
  Wang, Leja et al. 2023, ApJL 944, L58, uses). Outside 0.2 <= z <= 3 the parameters are
  held at their z = 0.2 or z = 3 values -- Prospector-β's ``const_phi=True`` choice, where
  the quadratic would extrapolate ``log phi1`` steeply; lor's box ends at z = 4, and
  ``smf_phi_evolution`` tilts the normalization if the data ask for fewer z > 3 galaxies.
  lor's ``log_mstar`` is the mass *formed*; the SMF counts surviving stars and remnants, so
  ``M_smf = log_mstar - SURVIVING_MASS_OFFSET``: 0.2 dex, a returned fraction of ~37% for a
  Chabrier IMF after a few Gyr (Bruzual & Charlot 2003, MNRAS 344, 1000; Conroy 2013, ARA&A
  51, 393) -- an approximation: young populations have returned less (~0.1 dex at 100 Myr);
* ``log_zmet`` given mass: the stellar mass-metallicity relation of Gallazzi et al. 2005
  (MNRAS 362, 41, Table 2; median, 16th and 84th percentiles, Chabrier masses), normal with
  the median as mean and ``P84 - P16`` as width, as Prospector-β's implementation does to
  allow for evolution with redshift; ``mzr_offset`` (dex) and ``mzr_sigma_scale`` adjust it;
* ``av`` given mass: normal (truncated to the box) about the median Hα attenuation - mass
  relation of Garn & Best 2010 (MNRAS 409, 421: ``A_Ha = 0.91 + 0.77 X + 0.11 X^2 - 0.09
  X^3``, ``X = log(M / 1e10 Msun)``, scatter ~0.3 mag about it), turned into stellar-continuum
  ``A_V`` with Calzetti et al. 2000 (ApJ 533, 682: ``k(Ha) = 3.33``, ``k(V) = 4.05``, stars
  see 0.44 of the gas's ``E(B-V)``): ``A_V = 0.535 A_Ha``; X is clamped to [-1.33, 1.5],
  where the cubic has its minimum and the sample of Garn & Best ends. The relation does not evolve at fixed mass to
  z ~ 2.5 (Whitaker et al. 2017, ApJ 850, 208). ``av_norm`` multiplies the median;
  ``av_scatter`` is the width, 0.535 x 0.3 = 0.16 mag. (An exponential with that mean, tried
  first, puts its mode at A_V = 0: the selection then keeps dust-free young galaxies, and the
  counts came out 19-23% high at i < 23-24);
* ``sfh`` = (``log_tau``, ``age_frac``) given mass and z: a mixture of a quiescent and a
  star-forming history, weighted by the quiescent fraction ``f_q(M, z)``. Peng et al. 2010
  (ApJ 721, 193) show that mass quenching gives passive galaxies a
  Schechter function with the star-forming M* and an alpha shallower by +1; Leja et al.
  2020's two components have exactly that shape (alpha1 - alpha2 = 1.2), so ``f_q`` is the
  shallow component's share of Φ at (M, z): at surviving mass 1e10 / 1e11 Msun, 0.24 / 0.83
  at z = 0.2, 0.12 / 0.69 at z = 1.6, 0.02 / 0.27 at z = 3, falling with z as that component
  fades -- the trend of measured quiescent fractions (e.g. Muzzin et al. 2013, ApJ 777, 18),
  with ``quench_logit_shift`` to adjust it. Quiescent histories are short and early (``log_tau``
  ~ N(-0.6, 0.25), tau ~ 0.25 Gyr; ``age_frac`` ~ Beta(6, 2), mean 0.75), so that their
  sSFR falls below the quiescence threshold 0.2 / t_H(z) of Pacifici et al. 2016 (ApJ 832,
  79) -- lor's choice of shape, not a published fit; star-forming ones keep v1's interim
  ``log_tau`` ~ N(0.2, 0.6), ``age_frac`` ~ Beta(1.6, 1.4). Quiescent galaxies keep the
  same dust relation (a simplification);
* ``dust_n``, ``log_u``: as the ``"population"`` v1 prior (same hyperparameters and values).

The factor names differ from v1's (``sfh`` replaces ``log_tau`` and ``age_frac``), so a
ratio between the two families uses the whole densities
(:class:`lor.hierarchy.reweight.PriorRatio`).

Measured (``lor bench prior``): at i < 25.3, 57.2 galaxies per arcmin^2 (LSST Science Book
57.0), median z 0.955, median i 24.24; see :mod:`lor.inference.prior_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from scipy.special import ndtr, ndtri

from lor.inference.prior import (
    DEFAULT_SELECTION,
    INTERIM_HYPERPARAMETERS,
    PopulationPrior,
    _TruncatedByCdf,
)
from lor.sps.parameters import PARAM_NAMES, default_training_box

tfd = tfp.distributions

FAMILY = "grounded"
FAMILY_VERSION = "1"

LEJA20_ANCHOR_Z = (0.2, 1.6, 3.0)
LEJA20_LOGPHI1 = (-2.44, -3.08, -4.14)  # log10 Mpc^-3 dex^-1 at the anchors
LEJA20_LOGPHI2 = (-2.89, -3.29, -3.51)
LEJA20_LOGMSTAR = (10.79, 10.88, 10.84)
LEJA20_ALPHA1 = -0.28
LEJA20_ALPHA2 = -1.48
"""Leja et al. 2020 continuity-model medians (as Prospector-β's ``priors_beta`` lists them)."""

SMF_PIVOT_Z = 1.6
"""Redshift about which ``smf_phi_evolution`` tilts log phi (the middle anchor)."""

SURVIVING_MASS_OFFSET = 0.2
"""dex: log mass formed minus log surviving stellar mass (see the module docstring)."""

GALLAZZI05_LOGM0, GALLAZZI05_DLOGM = 8.87, 0.2
GALLAZZI05_P50 = (-0.60, -0.61, -0.65, -0.61, -0.52, -0.41, -0.23, -0.11,
                  -0.01, 0.04, 0.07, 0.10, 0.12, 0.13, 0.14, 0.15)  # fmt: skip
GALLAZZI05_P16 = (-1.11, -1.07, -1.10, -1.03, -0.97, -0.90, -0.80, -0.65,
                  -0.41, -0.24, -0.14, -0.09, -0.06, -0.04, -0.03, -0.03)  # fmt: skip
GALLAZZI05_P84 = (-0.00, -0.00, -0.05, -0.01, 0.05, 0.09, 0.14, 0.17,
                  0.20, 0.22, 0.24, 0.25, 0.26, 0.28, 0.29, 0.30)  # fmt: skip
"""Gallazzi et al. 2005 Table 2, log(Z*/Zsun) at log M = 8.87, 9.07, ..., 11.87 (0.2 dex)."""

GARN_BEST10 = (0.91, 0.77, 0.11, -0.09)
"""A_Ha = sum c_k X^k, X = log10(M / 1e10 Msun) (Garn & Best 2010, Eq. 8)."""
GARN_BEST10_X_RANGE = (-1.33, 1.5)
AV_STAR_PER_A_HA = 0.44 * 4.05 / 3.33
"""Stellar-continuum A_V per unit A_Ha (Calzetti et al. 2000)."""

GROUNDED_HYPERPARAMETERS: dict[str, float] = {
    "smf_mstar_shift": 0.0,
    "smf_alpha_shift": 0.0,
    "smf_phi_evolution": 0.0,
    "mzr_offset": 0.0,
    "mzr_sigma_scale": 1.0,
    "av_norm": 1.0,
    "av_scatter": 0.16,
    "quench_logit_shift": 0.0,
    "q_tau_mean": -0.6,
    "q_tau_sigma": 0.25,
    "q_age_a": 6.0,
    "q_age_b": 2.0,
} | {
    k: INTERIM_HYPERPARAMETERS[k]
    for k in ("tau_mean", "tau_sigma", "age_a", "age_b", "dust_n_mean", "dust_n_sigma",
              "logu_mean", "logu_sigma")
}  # fmt: skip
"""Literature defaults: shifts of 0 and scales of 1 reproduce the published relations.

``smf_mstar_shift`` (dex) moves log M* of both Schechter components; ``smf_alpha_shift``
moves the low-mass slope alpha2; ``smf_phi_evolution`` (dex per unit z) tilts both log phi
about z = 1.6. ``quench_logit_shift`` adds to the log-odds of the quiescent fraction; the
``q_*`` shape the quiescent star-formation history, ``tau_*``/``age_*`` the star-forming one
(v1's interim values). The rest are described in the module docstring."""

_SMF = ("smf_mstar_shift", "smf_alpha_shift", "smf_phi_evolution")
FACTORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "redshift": (("redshift",), _SMF),
    "log_mstar": (("redshift", "log_mstar"), _SMF),
    "log_zmet": (("log_mstar", "log_zmet"), ("mzr_offset", "mzr_sigma_scale")),
    "sfh": (
        ("redshift", "log_mstar", "log_tau", "age_frac"),
        (
            "smf_mstar_shift",
            "smf_alpha_shift",
            "quench_logit_shift",
            "tau_mean",
            "tau_sigma",
            "age_a",
            "age_b",
            "q_tau_mean",
            "q_tau_sigma",
            "q_age_a",
            "q_age_b",
        ),
    ),
    "av": (("log_mstar", "av"), ("av_norm", "av_scatter")),
    "dust_n": (("dust_n",), ("dust_n_mean", "dust_n_sigma")),
    "log_u": (("log_u",), ("logu_mean", "logu_sigma")),
}
"""Factor -> (parameters its density reads, hyperparameters it owns), as in ``prior.FACTORS``."""

_NZ = 1024  # grid in log z for N(z), the volume element and p(z)
_NM = 256  # mass grid of the N(z) integral
_NM_SAMPLE = 512  # mass grid of the sampling table
_STERADIAN_PER_ARCMIN2 = (np.pi / (180.0 * 60.0)) ** 2


def _quadratic(values: tuple[float, float, float]) -> np.ndarray:
    """Coefficients (highest power first) of the parabola through the three anchors."""
    return np.polyfit(LEJA20_ANCHOR_Z, values, 2)


_COEF = {name: _quadratic(v) for name, v in
         (("logphi1", LEJA20_LOGPHI1), ("logphi2", LEJA20_LOGPHI2), ("logmstar", LEJA20_LOGMSTAR))}  # fmt: skip


@lru_cache(maxsize=8)
def log_volume_table(z_lo: float, z_hi: float) -> np.ndarray:
    """ln dV_c/dz/dOmega (Mpc^3 sr^-1) of Planck18 on the prior's log-z grid (tabulated once)."""
    from astropy.cosmology import Planck18

    z = np.exp(np.linspace(np.log(z_lo), np.log(z_hi), _NZ))
    return np.log(Planck18.differential_comoving_volume(z).value)


@dataclass
class GroundedPrior(PopulationPrior):
    """The published-relations population prior; the interface of :class:`PopulationPrior`."""

    hyperparameters: dict[str, float] = field(
        default_factory=lambda: dict(GROUNDED_HYPERPARAMETERS)
    )
    box: dict[str, tuple[float, float]] = field(default_factory=default_training_box)
    selection: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SELECTION))

    family = FAMILY
    family_version = FAMILY_VERSION
    defaults = GROUNDED_HYPERPARAMETERS
    factors = FACTORS

    def __post_init__(self) -> None:
        super().__post_init__()
        z_lo, z_hi = self._bounds("redshift")
        self._logz = (np.log(z_lo), np.log(z_hi))
        self._log_dv = log_volume_table(z_lo, z_hi)

    # -- the stellar-mass function ------------------------------------------------------
    def log_smf(self, log_mstar: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """ln Φ (Mpc^-3 per dex of mass formed) at (log_mstar, z), broadcasting."""
        return tf.reduce_logsumexp(
            tf.stack(self._smf_components(log_mstar, z)), 0
        ) + self._mass_log_weight(log_mstar)

    def _mass_log_weight(self, log_mstar: tf.Tensor) -> tf.Tensor | float:
        """ln of a factor on the mass function's shape (the same at every z): none here; a
        family that lets the data reshape it (:mod:`lor.inference.flexible_prior`) has one."""
        return 0.0

    def mass_log_weight_numpy(self, log_mstar: np.ndarray) -> np.ndarray | float:
        """:meth:`_mass_log_weight` in NumPy (:mod:`lor.inference.prior_density`)."""
        return 0.0

    def _smf_components(self, log_mstar: tf.Tensor, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """ln of the shallow (alpha1) and steep (alpha2) Schechter components of Φ."""
        ln10 = np.log(10.0)
        zc = tf.clip_by_value(z, LEJA20_ANCHOR_Z[0], LEJA20_ANCHOR_Z[-1])
        tilt = self._h("smf_phi_evolution") * (z - SMF_PIVOT_Z)

        def at(name: str) -> tf.Tensor:
            a, b, c = _COEF[name]
            return (a * zc + b) * zc + c

        dm = (log_mstar - SURVIVING_MASS_OFFSET) - (at("logmstar") + self._h("smf_mstar_shift"))
        alpha2 = LEJA20_ALPHA2 + self._h("smf_alpha_shift")
        one = (at("logphi1") + tilt + (LEJA20_ALPHA1 + 1.0) * dm) * ln10
        two = (at("logphi2") + tilt + (alpha2 + 1.0) * dm) * ln10
        common = np.log(ln10) - tf.exp(dm * ln10)
        return common + one, common + two

    def log_quiescent_fraction(
        self, log_mstar: tf.Tensor, z: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """ln f_q and ln (1 - f_q): the shallow component's share of Φ (see module docstring)."""
        one, two = self._smf_components(log_mstar, z)
        logit = one - two + self._h("quench_logit_shift")
        return tf.math.log_sigmoid(logit), tf.math.log_sigmoid(-logit)

    def _tables(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """ln N(z) and ln dV/dz N(z) on the log-z grid, and ln C = ln ∫ dV/dz N dz."""
        m_lo, m_hi = self._bounds("log_mstar")
        logz = tf.linspace(tf.constant(self._logz[0], tf.float64), self._logz[1], _NZ)
        mass = tf.linspace(tf.constant(m_lo, tf.float64), m_hi, _NM)
        log_phi = self.log_smf(mass[None, :], tf.exp(logz)[:, None])
        w_m = np.full(_NM, (m_hi - m_lo) / (_NM - 1))
        w_m[[0, -1]] *= 0.5
        log_n = tf.reduce_logsumexp(log_phi + np.log(w_m), axis=1)
        log_dn = log_n + self._log_dv + self._redshift_log_weight(logz)
        dx = (self._logz[1] - self._logz[0]) / (_NZ - 1)
        w_x = np.full(_NZ, dx)
        w_x[[0, -1]] *= 0.5
        log_c = tf.reduce_logsumexp(log_dn + logz + np.log(w_x))  # dz = z dlog z
        return log_n, log_dn, log_c

    def _redshift_log_weight(self, logz: tf.Tensor) -> tf.Tensor | float:
        """ln of a factor on the redshift distribution at ``logz`` (the grid): none here; a
        family that lets the data reshape n(z) (:mod:`lor.inference.flexible_prior`) has one."""
        return 0.0

    def _table_key(self) -> tuple[float, ...]:
        """The hyperparameter values the sampling tables depend on."""
        return tuple(self._float(h) for h in _SMF)

    def _on_grid(self, table: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        return tfp.math.interp_regular_1d_grid(
            tf.math.log(z), self._logz[0], self._logz[1], table, fill_value="constant_extension"
        )

    def surface_density(self) -> float:
        """Galaxies in the box per arcmin^2 (all of them, before any selection)."""
        return float(np.exp(self._tables()[2].numpy()) * _STERADIAN_PER_ARCMIN2)

    # -- densities ----------------------------------------------------------------------
    def _av_scale(self, mass: tf.Tensor) -> tf.Tensor:
        x = tf.clip_by_value(mass - SURVIVING_MASS_OFFSET - 10.0, *GARN_BEST10_X_RANGE)
        c0, c1, c2, c3 = GARN_BEST10
        a_ha = ((c3 * x + c2) * x + c1) * x + c0  # Horner: no float powers
        return self._h("av_norm") * AV_STAR_PER_A_HA * a_ha

    def _mzr(self, mass: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        grid = (GALLAZZI05_LOGM0, GALLAZZI05_LOGM0 + GALLAZZI05_DLOGM * (len(GALLAZZI05_P50) - 1))
        m = mass - SURVIVING_MASS_OFFSET

        def interp(values: tuple[float, ...]) -> tf.Tensor:
            table = tf.constant(values, tf.float64)
            return tfp.math.interp_regular_1d_grid(
                m, grid[0], grid[1], table, fill_value="constant_extension"
            )

        width = interp(GALLAZZI05_P84) - interp(GALLAZZI05_P16)
        return interp(GALLAZZI05_P50) + self._h("mzr_offset"), width * self._h("mzr_sigma_scale")

    def conditionals(self, theta: tf.Tensor) -> dict[str, tfd.Distribution]:
        """The factor distributions other than (z, log_mstar), given ``theta`` (N, D)."""
        mass = theta[:, self._col["log_mstar"]]
        loc, scale = self._mzr(mass)
        return {
            "log_zmet": self._trunc_normal(loc, scale, "log_zmet"),
            "av": self._trunc_normal(self._av_scale(mass), self._h("av_scatter"), "av"),
            "dust_n": self._trunc_normal(self._h("dust_n_mean"), self._h("dust_n_sigma"), "dust_n"),
            "log_u": self._trunc_normal(self._h("logu_mean"), self._h("logu_sigma"), "log_u"),
        }

    def _sfh_log_prob(self, theta: tf.Tensor) -> tf.Tensor:
        """ln p(log_tau, age_frac | log_mstar, z): quiescent and star-forming histories mixed
        by the quiescent fraction."""
        c = self._col
        tau, age = theta[:, c["log_tau"]], theta[:, c["age_frac"]]
        log_fq, log_fsf = self.log_quiescent_fraction(
            theta[:, c["log_mstar"]], theta[:, c["redshift"]]
        )
        age_box = self._bounds("age_frac")
        terms = []
        for log_f, pre in ((log_fq, "q_"), (log_fsf, "")):
            tau_d = self._trunc_normal(
                self._h(pre + "tau_mean"), self._h(pre + "tau_sigma"), "log_tau"
            )
            age_d = _TruncatedByCdf(
                tfd.Beta(self._h(pre + "age_a"), self._h(pre + "age_b")), *age_box
            )
            terms.append(log_f + tau_d.log_prob(tau) + age_d.log_prob(age))
        return tf.reduce_logsumexp(tf.stack(terms), 0)

    def factor_log_probs(
        self, theta: np.ndarray | tf.Tensor, factors: tuple[str, ...] | None = None
    ) -> dict[str, tf.Tensor]:
        """log density of each factor (all, or ``factors``) at ``theta`` (N, D); -inf outside
        the box of the factor's own parameter."""
        theta = tf.convert_to_tensor(theta, tf.float64)
        wanted = tuple(FACTORS) if factors is None else factors
        out: dict[str, tf.Tensor] = {}
        if "redshift" in wanted or "log_mstar" in wanted:
            z, mass = theta[:, self._col["redshift"]], theta[:, self._col["log_mstar"]]
            (z_lo, z_hi), (m_lo, m_hi) = self._bounds("redshift"), self._bounds("log_mstar")
            z_in = (z >= z_lo) & (z <= z_hi)
            safe_z = tf.where(z_in, z, (z_lo + z_hi) / 2)
            log_n, log_dn, log_c = self._tables()
            if "redshift" in wanted:
                out["redshift"] = tf.where(z_in, self._on_grid(log_dn, safe_z) - log_c, -np.inf)
            if "log_mstar" in wanted:
                m_in = (mass >= m_lo) & (mass <= m_hi)
                safe_m = tf.where(m_in, mass, (m_lo + m_hi) / 2)
                cond = self.log_smf(safe_m, safe_z) - self._on_grid(log_n, safe_z)
                out["log_mstar"] = tf.where(m_in, cond, -np.inf)
        if "sfh" in wanted:
            out["sfh"] = self._sfh_log_prob(theta)
        rest = [name for name in wanted if name not in ("redshift", "log_mstar", "sfh")]
        if rest:
            conditionals = self.conditionals(theta)
            for name in rest:
                out[name] = conditionals[name].log_prob(theta[:, self._col[name]])
        return out

    # -- sampling -----------------------------------------------------------------------
    def _float(self, name: str) -> float:
        """A hyperparameter's value as a float (no TF op for a plain number: table lookups
        in the reweighting hot path ask for these)."""
        value = self.hyperparameters[name]
        if isinstance(value, (tf.Tensor, tf.Variable)):
            return float(tf.cast(value, tf.float64).numpy())
        return float(value)

    def sampling_tables(self) -> dict[str, np.ndarray]:
        """Inverse-CDF tables for (z, log_mstar), cached per set of hyperparameter values."""
        key = self._table_key()
        if getattr(self, "_sampling_key", None) != key:
            logz = np.linspace(*self._logz, _NZ)
            log_n, log_dn, _ = (t.numpy() for t in self._tables())
            pdf_x = np.exp(log_dn + logz - log_dn.max())  # density in log z
            cdf_z = np.concatenate([[0.0], np.cumsum(0.5 * (pdf_x[1:] + pdf_x[:-1]))])
            m_lo, m_hi = self._bounds("log_mstar")
            mass = np.linspace(m_lo, m_hi, _NM_SAMPLE)
            log_phi = self.log_smf(tf.constant(mass)[None, :], tf.constant(np.exp(logz))[:, None])
            phi = np.exp(log_phi.numpy() - log_phi.numpy().max(axis=1, keepdims=True))
            cdf_m = np.concatenate(
                [np.zeros((_NZ, 1)), np.cumsum(0.5 * (phi[:, 1:] + phi[:, :-1]), axis=1)], axis=1
            )
            cdf_m /= cdf_m[:, -1:]
            # Rows offset by 2 * row so one sorted array serves every row's search.
            self._tables_np = {
                "logz": logz, "cdf_z": cdf_z / cdf_z[-1], "mass": mass,
                "cdf_m_flat": (cdf_m + 2.0 * np.arange(_NZ)[:, None]).ravel(),
            }  # fmt: skip
            self._sampling_key = key
        return self._tables_np

    def sample_redshift_mass(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 2) draws of (z, log_mstar): inverse CDF in z, then in M on the two table rows
        around each z, interpolated linearly between them."""
        t = self.sampling_tables()
        x = np.interp(rng.uniform(size=n), t["cdf_z"], t["logz"])
        pos = (x - t["logz"][0]) / (t["logz"][1] - t["logz"][0])
        row = np.clip(np.floor(pos).astype(np.int64), 0, _NZ - 2)
        frac = pos - row
        u = rng.uniform(size=n)
        mass = np.zeros(n)
        for r, w in ((row, 1.0 - frac), (row + 1, frac)):
            mass += w * self._inverse_row(t, r, u)
        return np.stack([np.exp(x), mass], axis=1)

    @staticmethod
    def _inverse_row(t: dict[str, np.ndarray], rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        flat, mass = t["cdf_m_flat"], t["mass"]
        target = u + 2.0 * rows
        j = np.searchsorted(flat, target, side="right") - 1
        j = np.clip(j, rows * _NM_SAMPLE, rows * _NM_SAMPLE + _NM_SAMPLE - 2)
        lo, hi = flat[j], flat[j + 1]
        k = j - rows * _NM_SAMPLE
        step = mass[1] - mass[0]
        return mass[k] + step * np.clip((target - lo) / np.maximum(hi - lo, 1e-300), 0.0, 1.0)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """Draw (n, D) parameters (before any selection), vectorized in NumPy."""
        rng = np.random.default_rng(seed)
        c, h = self._col, self._float
        theta = np.zeros((n, len(PARAM_NAMES)))
        theta[:, [c["redshift"], c["log_mstar"]]] = self.sample_redshift_mass(n, rng)
        mass = theta[:, c["log_mstar"]]
        loc, scale = (v.numpy() for v in self._mzr(tf.constant(mass)))
        theta[:, c["log_zmet"]] = self._np_trunc_normal(rng, n, loc, scale, "log_zmet")
        log_fq = self.log_quiescent_fraction(
            tf.constant(mass), tf.constant(theta[:, c["redshift"]])
        )
        quiescent = rng.uniform(size=n) < np.exp(log_fq[0].numpy())
        pick = {k: np.where(quiescent, h("q_" + k), h(k)) for k in ("tau_mean", "tau_sigma", "age_a", "age_b")}  # fmt: skip
        theta[:, c["log_tau"]] = self._np_trunc_normal(rng, n, pick["tau_mean"], pick["tau_sigma"], "log_tau")  # fmt: skip
        theta[:, c["age_frac"]] = self._np_trunc_beta(rng, pick["age_a"], pick["age_b"])
        av_median = self._av_scale(tf.constant(mass)).numpy()
        theta[:, c["av"]] = self._np_trunc_normal(rng, n, av_median, h("av_scatter"), "av")
        theta[:, c["dust_n"]] = self._np_trunc_normal(rng, n, h("dust_n_mean"), h("dust_n_sigma"), "dust_n")  # fmt: skip
        theta[:, c["log_u"]] = self._np_trunc_normal(
            rng, n, h("logu_mean"), h("logu_sigma"), "log_u"
        )
        return np.clip(theta, self.low, self.high)

    def _np_trunc_normal(
        self, rng: np.random.Generator, n: int, loc: Any, scale: Any, name: str
    ) -> np.ndarray:
        """Inverse-CDF draws of a normal truncated to the box of ``name``."""
        lo, hi = self._bounds(name)
        a, b = ndtr((lo - np.asarray(loc)) / scale), ndtr((hi - np.asarray(loc)) / scale)
        u = a + rng.uniform(size=n) * (b - a)
        return np.asarray(loc) + np.asarray(scale) * ndtri(u)

    def _np_trunc_beta(self, rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Beta(a, b) draws (per-row shapes) redrawn until inside the ``age_frac`` box."""
        lo, hi = self._bounds("age_frac")
        out = rng.beta(a, b)
        bad = (out < lo) | (out > hi)
        while bad.any():
            out[bad] = rng.beta(a[bad], b[bad])
            bad = (out < lo) | (out > hi)
        return out
