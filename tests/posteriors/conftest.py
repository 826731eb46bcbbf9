"""Shared representations and seeded synthetic posteriors for the posterior tests."""

from __future__ import annotations

import numpy as np
import pytest

from lor.posteriors import GaussianMixtureFlow
from lor.posteriors.synthetic import random_params

BOX_LO = np.array([0.01, 7.0, -2.0, -1.0, 0.01, 0.0, 0.0, -4.0])
BOX_HI = np.array([4.0, 12.5, 0.4, 1.3, 1.0, 3.0, 2.0, -1.0])


@pytest.fixture(scope="session")
def flow() -> GaussianMixtureFlow:
    """The production shape: D=8 SPS parameters, K=4 components."""
    return GaussianMixtureFlow(BOX_LO, BOX_HI, n_components=4)


@pytest.fixture(scope="session")
def params(flow: GaussianMixtureFlow) -> np.ndarray:
    """40 seeded, valid posteriors with widths from spec-z-like to broad."""
    return random_params(flow, 40, seed=11)
