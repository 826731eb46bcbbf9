"""The dashboard's plots as PNG bytes (matplotlib's object API: no pyplot state, so the
server's worker threads can draw at the same time).

Each function takes what :mod:`lor.db.dashboard_store` returns; with no data yet it draws
the axes and says so, so the page never shows a broken image.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lor.inference.flags import Flag

#: |z_phot - z_true| / (1 + z_true) above this is an outlier (as in the demo plot).
OUTLIER_CUT = 0.15
FLAG_NAMES = [f.name or str(f.value) for f in Flag]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _empty(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="0.4")


def progress_png(series: dict[str, list[float]], title: str) -> bytes:
    """Items done, failed and remaining over time, stacked; the rate on the right axis."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    t = np.asarray(series["t"])
    if not len(t):
        _empty(ax, "no items")
        return _png(fig)
    minutes = (t - t[0] + (t[1] - t[0] if len(t) > 1 else 0)) / 60
    done, failed, rest = (np.asarray(series[k], float) for k in ("done", "failed", "remaining"))
    ax.stackplot(minutes, done, failed, rest, labels=["done", "failed", "pending + claimed"],
                 colors=["#4c9a2a", "#c0392b", "#bdc3c7"], alpha=0.9)  # fmt: skip
    ax.set(xlabel="minutes since the run was created", ylabel="items", title=title)
    ax.legend(loc="center left", fontsize=8)
    if len(t) > 1:
        rate = np.diff(np.concatenate([[0.0], done])) / np.diff(
            np.concatenate([[t[0] - (t[1] - t[0])], t])
        )
        twin = ax.twinx()
        twin.plot(minutes, rate, color="k", lw=1)
        twin.set_ylabel("objects/s (black)")
        twin.set_ylim(bottom=0)
    return _png(fig)


def ood_png(ood: dict[str, Any]) -> bytes:
    """OOD-flag rate per bit (all tracts) and per tract and bit (heat map)."""
    fig = Figure(figsize=(9, 3.4))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    objects = np.asarray(ood["objects"], float)
    if not objects.sum():
        _empty(left, "no posteriors yet")
        _empty(right, "no posteriors yet")
        return _png(fig)
    flagged = np.asarray(ood["flagged"], float).reshape(len(objects), -1)
    overall = flagged.sum(axis=0) / objects.sum()
    left.barh(range(len(overall)), 100 * overall, color="#2c7fb8")
    left.set_yticks(range(len(overall)), FLAG_NAMES[: len(overall)], fontsize=7)
    left.invert_yaxis()
    left.set(xlabel="% of posteriors with the bit", title="OOD flags, all tracts")
    per_tract = 100 * flagged / objects[:, None]
    image = right.imshow(per_tract.T, aspect="auto", cmap="viridis", vmin=0,
                         vmax=max(1.0, per_tract.max()))  # fmt: skip
    tracts = ood["tracts"]
    step = max(1, len(tracts) // 12)
    right.set_xticks(range(0, len(tracts), step), [str(t) for t in tracts[::step]],
                     rotation=60, fontsize=7)  # fmt: skip
    right.set_yticks(range(len(overall)), FLAG_NAMES[: len(overall)], fontsize=7)
    right.set(xlabel="tract", title="% flagged per tract and bit")
    fig.colorbar(image, ax=right, label="%")
    return _png(fig)


def calibration_png(terms: list[dict[str, Any]], title: str) -> bytes:
    """Zeropoint offsets and noise scalings per tract and band, with their errors."""
    fig = Figure(figsize=(9, 3.4))
    zp, ns = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if not terms:
        _empty(zp, "no terms in this version")
        _empty(ns, "no terms in this version")
        return _png(fig)
    tracts = sorted({t["tract_id"] for t in terms})
    bands = sorted({t["band"] for t in terms}, key="ugrizy".find)
    x = {t: i for i, t in enumerate(tracts)}
    width = 0.8 / max(len(bands), 1)
    for j, band in enumerate(bands):
        rows = [t for t in terms if t["band"] == band]
        xs = np.array([x[t["tract_id"]] for t in rows]) - 0.4 + width * (j + 0.5)
        for ax, value, err in ((zp, "zeropoint_offset_mag", "zeropoint_offset_err"),
                               (ns, "noise_scale", "noise_scale_err")):  # fmt: skip
            e = [t[err] if t[err] is not None else 0.0 for t in rows]
            ax.errorbar(xs, [t[value] for t in rows], yerr=e, fmt="o", ms=3, lw=0.8, label=band)
    for ax, label, ref in ((zp, "zeropoint offset (mag)", 0.0), (ns, "noise scale", 1.0)):
        ax.axhline(ref, color="k", lw=0.6)
        step = max(1, len(tracts) // 12)
        ax.set_xticks(range(0, len(tracts), step), [str(t) for t in tracts[::step]],
                      rotation=60, fontsize=7)  # fmt: skip
        ax.set(xlabel="tract", ylabel=label)
    zp.set_title(title, fontsize=9)
    ns.legend(fontsize=7, ncol=len(bands), loc="upper right")
    return _png(fig)


def truth_png(cmp: dict[str, list]) -> bytes:
    """Photo-z against truth (OOD-flagged marked), the PIT histogram and coverage."""
    fig = Figure(figsize=(11, 3.6))
    sc, pit_ax, cov = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    zt = np.asarray(cmp["z_true"], float)
    if not len(zt):
        for ax in (sc, pit_ax, cov):
            _empty(ax, "no objects with a true redshift")
        return _png(fig)
    zp = np.asarray(cmp["z_q50"], float)
    flagged = np.asarray(cmp["ood_flags"]) != 0
    pit = np.asarray(cmp["pit"], float)
    dz = (zp - zt) / (1 + zt)
    ok = ~flagged
    nmad = 1.4826 * np.median(np.abs(dz[ok] - np.median(dz[ok]))) if ok.any() else np.nan
    outliers = np.mean(np.abs(dz[ok]) > OUTLIER_CUT) if ok.any() else np.nan
    sc.plot(zt[ok], zp[ok], ".", ms=2, alpha=0.5, color="C0", label="no OOD flag")
    if flagged.any():
        sc.plot(zt[flagged], zp[flagged], "x", ms=3, color="C3", label="OOD-flagged")
    top = max(1.0, float(np.nanmax(np.concatenate([zt, zp]))))
    grid = np.linspace(0, top, 20)
    sc.plot(grid, grid, "k-", lw=0.6)
    for s in (-1, 1):
        sc.plot(grid, grid + s * OUTLIER_CUT * (1 + grid), "k--", lw=0.5)
    sc.set(xlabel="true z", ylabel="posterior median z",
           title=f"sigma_NMAD {nmad:.3f}, outliers {outliers:.1%} (n={len(zt)})")  # fmt: skip
    sc.title.set_fontsize(9)
    sc.legend(fontsize=7)
    pit_ax.hist(pit[np.isfinite(pit)], bins=20, range=(0, 1), color="#2c7fb8")
    pit_ax.axhline(len(pit) / 20, color="k", lw=0.6)
    pit_ax.set(xlabel="PIT = CDF(z_true)", ylabel="objects", title="PIT (flat if calibrated)")
    levels = np.linspace(0.05, 0.95, 19)
    central = np.abs(pit - 0.5) * 2
    cov.plot(levels, [np.mean(central <= c) for c in levels], "o-", ms=3, label="z")
    cov.plot([0, 1], [0, 1], "k-", lw=0.6)
    cov.set(xlabel="credible level", ylabel="fraction of true z inside",
            title="coverage of central intervals", xlim=(0, 1), ylim=(0, 1))  # fmt: skip
    return _png(fig)


def nz_png(nz: dict[str, list], title: str) -> bytes:
    """The run's n(z) (mean of its posterior redshift densities)."""
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.add_subplot()
    if not nz["density"]:
        _empty(ax, "no posteriors yet")
    else:
        ax.plot(nz["z"], nz["density"], color="#8e44ad")
        ax.fill_between(nz["z"], nz["density"], alpha=0.2, color="#8e44ad")
    ax.set(xlabel="z", ylabel="n(z) (normalised)", title=title)
    ax.set_ylim(bottom=0)
    return _png(fig)
