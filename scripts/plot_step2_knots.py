"""Plot the flexible population Step 2 fitted on each misspecification-suite variant.

Reads the JSON lines ``lor bench misspecified`` printed (``docs/bench/misspecified-*.json``)
and draws each variant's fitted ln w(z) and ln w(M) (:mod:`lor.inference.flexible_prior`)
centred (a knot set's common level does not change the density), with the fit's 1-sigma
Laplace errors (which include the common level's, so they overstate the centred ones).

    python scripts/plot_step2_knots.py docs/bench/misspecified-938ba3b-*.json \
        --out docs/step2_knots.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lor.inference.flexible_prior import MASS_KNOTS, REDSHIFT_KNOTS, lift  # noqa: E402
from lor.inference.grounded_prior import GroundedPrior  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/step2_knots.png"))
    args = parser.parse_args()
    variants: dict[str, dict] = {}
    for path in args.bench_json:
        variants |= json.loads(path.read_text().strip().splitlines()[-1])["variants"]
    prior = lift(GroundedPrior())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, knots, label in (
        (axes[0], REDSHIFT_KNOTS, "redshift"),
        (axes[1], MASS_KNOTS, "log M* formed [M_sun]"),
    ):
        x = prior.knot_positions(knots)
        for name, result in sorted(variants.items()):
            fitted = result.get("step2", {}).get("hyperparameters", {})
            if knots.names[0] not in fitted:
                continue
            value = np.array([fitted[n][0] for n in knots.names])
            error = np.array([fitted[n][1] for n in knots.names])
            ax.errorbar(x, value - value.mean(), error, marker="o", ms=3, capsize=2,
                        label=name)  # fmt: skip
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("fitted ln weight (centred)")
        ax.set_title(f"{knots.prefix}: weight on the published relations")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("Step 2 --free nz,mf on the misspecification suite (lor bench misspecified)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
