"""Tract schemes.

A catalog that carries tracts (the Rubin Object table's ``tract``, from the Rubin skymap)
keeps them: scheme ``catalog``. A catalog without tracts gets them from its positions: the
HEALPix pixel (NESTED ordering, nside=32: 12,288 pixels of 3.36 deg², about the size of a
Rubin tract) containing the object, scheme ``healpix-nest-32``. One database uses one scheme.
"""

from __future__ import annotations

import numpy as np

HEALPIX_NSIDE = 32
HEALPIX_SCHEME = f"healpix-nest-{HEALPIX_NSIDE}"


def healpix_tracts(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """HEALPix nested nside=32 pixel index of each position (ICRS degrees)."""
    import astropy.units as u
    from astropy_healpix import HEALPix

    pix = HEALPix(nside=HEALPIX_NSIDE, order="nested")
    return pix.lonlat_to_healpix(np.asarray(ra_deg) * u.deg, np.asarray(dec_deg) * u.deg).astype(
        np.int32
    )
