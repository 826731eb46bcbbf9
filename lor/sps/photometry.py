"""Band integration of redshifted rest-frame spectra, batched over objects.

For a source at redshift ``z`` with rest-frame luminosity density ``L_lambda`` on pixels
``lambda_k`` (widths ``dlambda_k``) and lines ``L_l`` at ``lambda_l``, the photon-weighted
mean luminosity density seen through band ``R`` is

    <L> = [sum_k L_k R(lambda_k (1+z)) lambda_k dlambda_k + sum_l L_l R(lambda_l (1+z)) lambda_l]
          / sum_k R(lambda_k (1+z)) lambda_k dlambda_k,

and ``f_nu = <L> / (4 pi D_L**2 (1+z)) * lambda_pivot**2 / c``.

On a log-uniform rest grid, redshifting is a shift by ``ln(1+z)`` in ``ln(lambda)``, the
same for every pixel. Each band is therefore tabulated once on a grid ``OVERSAMPLE`` times
finer than the pixels, and ``R(lambda_k (1+z))`` for a whole spectrum is two strided
gathers and one linear interpolation weight per object (no per-pixel search); emission
lines use the same tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lor.errors import ConfigError
from lor.sps.bandpasses import Bandpass

OVERSAMPLE = 32
"""Band tables are sampled at ``dlnlam / OVERSAMPLE``."""


class RedshiftedBands:
    """Mean rest-frame luminosity density through bands for sources at any redshift.

    Parameters
    ----------
    bands
        The bandpasses.
    edges
        Rest-frame pixel edges (Angstrom), uniform in ``ln(lambda)``.
    z_max
        Largest redshift to support.
    """

    def __init__(self, bands: Sequence[Bandpass], edges: np.ndarray, z_max: float) -> None:
        log_edges = np.log(edges)
        steps = np.diff(log_edges)
        self.dlnlam = float(steps.mean())
        if not np.allclose(steps, self.dlnlam, rtol=1e-6, atol=0.0):
            raise ConfigError("rest-frame pixel edges must be uniform in ln(lambda)")
        self.n_pix = steps.size
        self.centres = np.exp(0.5 * (log_edges[1:] + log_edges[:-1]))
        self.lam_dlam = self.centres * np.diff(edges)
        self.pivot = np.array([b.pivot_wavelength for b in bands])
        n_fine = (self.n_pix + int(np.ceil(np.log1p(z_max) / self.dlnlam)) + 2) * OVERSAMPLE
        fine_wave = self.centres[0] * np.exp(np.arange(n_fine) * self.dlnlam / OVERSAMPLE)
        self._tables = np.stack(
            [np.interp(fine_wave, b.wavelength, b.response, left=0.0, right=0.0) for b in bands]
        )
        self._stride = np.arange(self.n_pix) * OVERSAMPLE

    def mean_luminosity(
        self,
        continuum: np.ndarray,
        redshift: np.ndarray,
        line_wavelength: np.ndarray | None = None,
        line_luminosity: np.ndarray | None = None,
    ) -> np.ndarray:
        """Photon-weighted mean ``L_lambda`` through each band (units of ``continuum``).

        Parameters
        ----------
        continuum
            ``(N, K)`` rest-frame luminosity density on the pixels.
        redshift
            ``(N,)`` source redshifts.
        line_wavelength, line_luminosity
            ``(L,)`` rest wavelengths and ``(N, L)`` luminosities (``continuum`` units times
            Angstrom) of emission lines, treated as delta functions.

        Returns
        -------
        numpy.ndarray
            ``(N, B)``.
        """
        scale = OVERSAMPLE / self.dlnlam
        pos = np.log1p(redshift) * scale
        start = np.floor(pos).astype(np.int64)
        frac = (pos - start)[:, None]
        index = start[:, None] + self._stride[None, :]
        weighted = continuum * self.lam_dlam[None, :]
        have_lines = line_luminosity is not None
        if have_lines:
            line_pos = (np.log(line_wavelength / self.centres[0]) * scale)[None, :] + pos[:, None]
            line_pos = np.clip(line_pos, 0.0, self._tables.shape[1] - 1.000001)
            line_index = line_pos.astype(np.int64)
            line_frac = line_pos - line_index
            line_weighted = line_luminosity * line_wavelength[None, :]
        out = np.empty((continuum.shape[0], len(self._tables)))
        for b, table in enumerate(self._tables):
            resp = table[index]
            resp += frac * (table[index + 1] - resp)
            numerator = np.einsum("nk,nk->n", weighted, resp)
            if have_lines:
                resp_line = table[line_index]
                resp_line += line_frac * (table[line_index + 1] - resp_line)
                numerator += np.einsum("nl,nl->n", line_weighted, resp_line)
            out[:, b] = numerator / (resp @ self.lam_dlam)
        return out
