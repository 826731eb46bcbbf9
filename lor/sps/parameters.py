"""SPS parameter names, units, the default training box, and input validation.

One parameter vector has ``len(PARAM_NAMES)`` entries, always in this order:

==========  ============================================================================
name        meaning (units)
==========  ============================================================================
redshift    redshift ``z`` (``0 < z <= z_max`` of the model, 6 by default)
log_mstar   log10 of the total stellar mass formed (Msun); bagpipes' ``massformed``.
            Fluxes are proportional to ``10**log_mstar``, so it enters the magnitudes as
            an exact additive shift ``-2.5 * log_mstar`` (see :data:`MASS_INDEX`)
log_zmet    log10 of the stellar (and nebular) metallicity in solar units, ``Z / Zsun``;
            bagpipes' ``metallicity = 10**log_zmet``
log_tau     log10 of the delayed-tau e-folding time ``tau`` (Gyr)
age_frac    age of the population (time since star formation began) divided by the age
            of the universe at ``z``; bagpipes' delayed ``age`` (Gyr) is
            ``age_frac * t_universe(z)``
av          V-band (5500 A) attenuation of the diffuse ISM (mag); stars younger than
            10 Myr and their nebular emission see ``eta * av`` with ``eta = 2``
dust_n      Charlot & Fall (2000) power-law index ``n`` as in bagpipes' ``CF00`` dust:
            ``A(lambda) / A_V = (lambda / 5500 A) ** (-n)``; positive ``n`` means more
            attenuation in the blue (CF00 and bagpipes' typical value: ``n = 0.7``)
log_u       log10 of the nebular ionization parameter (bagpipes ``nebular: {logU}``)
==========  ============================================================================

Why a delayed-tau star-formation history, ``SFR(t) ~ t exp(-t / tau)``: two shape
parameters cover rising (``tau`` >> age), peaked and declining (``tau`` << age) histories,
the fluxes are smooth functions of both, and the box is a simple rectangle -- all of which
an emulator learns easily. Non-parametric histories (e.g. continuity bins) need 5-10
correlated parameters with a prior that is hard to sample uniformly, which broad-band
ugrizy photometry cannot constrain anyway.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from lor.errors import ParameterError

PARAM_NAMES: Final[tuple[str, ...]] = (
    "redshift",
    "log_mstar",
    "log_zmet",
    "log_tau",
    "age_frac",
    "av",
    "dust_n",
    "log_u",
)
"""The SPS parameters, in the order of the columns of every parameter array."""

PARAM_UNITS: Final[dict[str, str]] = {
    "redshift": "",
    "log_mstar": "dex(Msun), stellar mass formed",
    "log_zmet": "dex(Z/Zsun)",
    "log_tau": "dex(Gyr)",
    "age_frac": "age / age of the universe at z",
    "av": "mag",
    "dust_n": "",
    "log_u": "dex",
}

MASS_INDEX: Final[int] = PARAM_NAMES.index("log_mstar")
"""Column of ``log_mstar``; magnitudes shift by exactly ``-2.5`` per dex of it."""

ETA_BIRTH_CLOUD: Final[float] = 2.0
"""Birth-cloud multiplier of ``av`` for stars younger than :data:`T_BIRTH_CLOUD_GYR`."""

T_BIRTH_CLOUD_GYR: Final[float] = 0.01
"""Age (Gyr) below which stars sit in their birth clouds and ionize nebular gas."""

# Limits of the bagpipes BC03 grids: metallicity 0.005-5 Zsun (log -2.30 to 0.70),
# nebular log U from -4 to 0; the model rejects values outside them.
_DEFAULT_BOX: Final[dict[str, tuple[float, float]]] = {
    "redshift": (0.01, 4.0),
    "log_mstar": (7.0, 12.5),
    "log_zmet": (-2.0, 0.4),
    "log_tau": (-1.0, 1.3),
    "age_frac": (0.01, 1.0),
    "av": (0.0, 3.0),
    "dust_n": (0.0, 2.0),
    "log_u": (-4.0, -1.0),
}


def default_training_box() -> dict[str, tuple[float, float]]:
    """Per-parameter ``(low, high)`` ranges of the broad interim prior for training.

    Covers real galaxies in a wide optical survey: ``0.01 < z < 4``; ``7 < log_mstar <
    12.5``; ``-2 < log_zmet < 0.4`` (inside the BC03 grid, 0.005-5 Zsun); ``-1 < log_tau
    < 1.3`` (0.1-20 Gyr); ``0.01 < age_frac < 1``; ``0 < av < 3``; ``0 < dust_n < 2``
    (grey to steeper than SMC-like, around the CF00 value 0.7; bagpipes' sign convention,
    ``A ~ lambda**-n``); ``-4 < log_u < -1`` (inside the nebular grid, -4 to 0).

    Returns
    -------
    dict
        A fresh dict keyed by :data:`PARAM_NAMES`, in that order.
    """
    return dict(_DEFAULT_BOX)


def box_arrays(box: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ``box`` as arrays in :data:`PARAM_NAMES` order.

    Raises
    ------
    ParameterError
        If a parameter is missing or unknown, or a range is empty or not finite.
    """
    missing = [name for name in PARAM_NAMES if name not in box]
    unknown = [name for name in box if name not in PARAM_NAMES]
    if missing or unknown:
        raise ParameterError(
            f"box must have exactly the keys {list(PARAM_NAMES)}; "
            f"missing {missing}, unknown {unknown}"
        )
    low = np.array([float(box[name][0]) for name in PARAM_NAMES])
    high = np.array([float(box[name][1]) for name in PARAM_NAMES])
    bad = ~(np.isfinite(low) & np.isfinite(high) & (low <= high))
    if bad.any():
        names = [PARAM_NAMES[i] for i in np.flatnonzero(bad)]
        raise ParameterError(f"box ranges must be finite with low <= high; bad: {names}")
    return low, high


def as_param_array(params: np.ndarray | list) -> np.ndarray:
    """Check and convert SPS parameters to a float64 array of shape ``(N, D)``.

    ``D = len(PARAM_NAMES)``; a single vector of shape ``(D,)`` is returned as ``(1, D)``.

    Raises
    ------
    ParameterError
        On a wrong shape, a non-numeric entry, or a NaN/infinite value (the message says
        which rows and columns).
    """
    try:
        arr = np.asarray(params, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"SPS parameters must be numeric: {exc}") from None
    n_params = len(PARAM_NAMES)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_params:
        raise ParameterError(
            f"SPS parameters must have shape (N, {n_params}) with columns "
            f"{list(PARAM_NAMES)}; got shape {np.shape(params)}"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        names = sorted({PARAM_NAMES[c] for c in cols})
        raise ParameterError(
            f"SPS parameters contain NaN or infinite values in {rows.size} entries "
            f"(first row {int(rows[0])}; columns {names})"
        )
    return arr
