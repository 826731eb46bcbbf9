"""The AB system in nJy (lor.units) against its definition, independent of the module's constants."""

from __future__ import annotations

import numpy as np

from lor.units import AB_MAG_OF_1_NJY, AB_ZEROPOINT_NJY, abmag_to_njy, njy_to_abmag


def test_ab_zero_point_is_3631_jy() -> None:
    assert AB_ZEROPOINT_NJY == 3631.0 * 1e9  # Oke & Gunn (1983): m_AB = 0 at 3631 Jy
    assert abmag_to_njy(0.0) == AB_ZEROPOINT_NJY
    assert abs(njy_to_abmag(3631.0 * 1e9)) < 1e-12


def test_magnitude_of_one_njy_and_round_trip() -> None:
    assert abs(AB_MAG_OF_1_NJY - 31.400066) < 1e-6  # 2.5 log10(3.631e12)
    assert abs(njy_to_abmag(1.0) - AB_MAG_OF_1_NJY) < 1e-12
    mags = np.array([18.0, 24.5, 27.25], np.float32)
    np.testing.assert_allclose(njy_to_abmag(abmag_to_njy(mags)), mags, rtol=0, atol=1e-12)
    assert abmag_to_njy(mags).dtype == np.float64  # float32 magnitudes converted in float64
