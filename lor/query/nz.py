"""n(z) of a selection of stored posteriors, per tomographic bin, with jackknife errors.

The numbers come from the SQL aggregates ``lor.nz`` and ``lor.nz_jackknife`` (so Python and
psql users get the same n(z)); :func:`stacked_pdf` is the same quantity computed from the
Python representation, which the tests hold the SQL to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from lor.db import selection_store
from lor.db.selection_store import BinNz
from lor.errors import LorError
from lor.posteriors.base import PosteriorRepresentation
from lor.posteriors.gmm_flow import GaussianMixtureFlow

#: Representations whose params the SQL n(z) functions read.
SQL_REPRESENTATIONS = (GaussianMixtureFlow.name,)
ASSIGNMENTS = tuple(selection_store.BIN_EXPRESSIONS)


class NzError(LorError):
    """An n(z) request that cannot be answered (bad grid or bins, unsupported posteriors)."""


@dataclass(frozen=True)
class NzResult:
    """n(z) of every bin of a selection of one run, on ``z``."""

    run_id: int
    where: str | None
    z: np.ndarray
    assign: str
    edges: list[float] | None
    bins: list[BinNz] = field(default_factory=list)

    def as_dict(self, with_arrays: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "where": self.where,
            "grid": [float(self.z[0]), float(self.z[-1]), int(self.z.size)],
            "assign": self.assign,
            "edges": self.edges,
            "bins": [],
        }
        for b in self.bins:
            dz = np.trapezoid(b.nz, self.z)
            row: dict[str, Any] = {
                "bin": b.bin,
                "n_objects": b.n_objects,
                "mean_z": float(np.trapezoid(b.nz * self.z, self.z) / dz) if dz > 0 else None,
                "integral": float(dz),
            }
            if with_arrays:
                row["nz"] = b.nz.tolist()
                row["nz_err"] = None if b.nz_err is None else b.nz_err.tolist()
            out["bins"].append(row)
        return out


def check_grid(zmin: float, zmax: float, n: int) -> None:
    if not (np.isfinite(zmin) and np.isfinite(zmax) and zmax > zmin) or n < 2:
        raise NzError(f"the grid needs finite zmin < zmax and n >= 2; got {zmin}, {zmax}, {n}")


def check_edges(edges: list[float] | None, assign: str) -> None:
    if assign not in ASSIGNMENTS:
        raise NzError(f"assign must be one of {', '.join(ASSIGNMENTS)}; got {assign!r}")
    if assign == "none":
        return
    e = np.asarray(edges or [], dtype=float)
    if e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise NzError(f"bin edges must be >= 2 increasing finite numbers; got {edges}")


def run_nz(
    engine: Engine,
    run: int | str,
    where: str | None = None,
    zmin: float = 0.0,
    zmax: float = 3.0,
    n: int = 301,
    assign: str = "none",
    edges: list[float] | None = None,
    p_min: float = 0.0,
) -> NzResult:
    """n(z) of the posteriors of ``run`` that satisfy ``where`` (SQL over the columns of
    ``lor.run_posteriors``), per tomographic bin if ``assign`` is ``median`` (bin of z_q50)
    or ``probability`` (bin of largest P(z in bin), at least ``p_min``)."""
    from lor.runs.lifecycle import get_run

    check_grid(zmin, zmax, n)
    check_edges(edges, assign)
    run_id = get_run(engine, run).id
    with engine.begin() as conn:
        names = selection_store.representations_in(conn, run_id, where)
    unknown = [name for name in names if name not in SQL_REPRESENTATIONS]
    if unknown:
        raise NzError(
            f"the selection holds posteriors of representation(s) {unknown}; the SQL n(z) "
            f"reads {list(SQL_REPRESENTATIONS)} only: add representation_name = 'gmm_flow'"
        )
    with engine.begin() as conn:
        bins = selection_store.nz_by_bin(
            conn, run_id, where, zmin, zmax, n, assign, list(edges or []), p_min
        )
        grid = selection_store.nz_grid(conn, zmin, zmax, n)
    return NzResult(run_id, where, grid, assign, list(edges) if edges else None, bins)


def stacked_pdf(flow: PosteriorRepresentation, params: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean redshift density of ``params`` (N, P) on ``z``: what ``lor.nz`` computes."""
    p = np.asarray(params, dtype=np.float32)
    if p.shape[0] == 0:
        return np.full(np.shape(z), np.nan)
    return flow.z_pdf(p, np.asarray(z, dtype=np.float64)[None, :]).mean(axis=0)


def jackknife(nz_groups: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n(z) and its delete-one-group jackknife error from per-group n(z) (G, M) and counts."""
    nz_groups = np.asarray(nz_groups, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    total = counts @ nz_groups
    n_all = counts.sum()
    loo = (total[None, :] - counts[:, None] * nz_groups) / (n_all - counts)[:, None]
    g = len(counts)
    err = np.sqrt((g - 1) / g * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0))
    return total / n_all, err


def true_redshifts_by_bin(
    engine: Engine, result: NzResult, truth: Path, p_min: float = 0.0
) -> dict[int, np.ndarray]:
    """True redshifts of each bin's objects from a truth table (``objectId``, ``redshift``
    columns, as lor's example catalog ships), to draw over the stacked n(z)."""
    import pyarrow.parquet as pq

    table = pq.read_table(truth, columns=["objectId", "redshift"])
    lookup = dict(zip(table["objectId"].to_pylist(), table["redshift"].to_pylist(), strict=True))
    with engine.begin() as conn:
        members = selection_store.bin_members(
            conn, result.run_id, result.where, result.assign, result.edges, p_min
        )
    return {
        b: np.array([lookup[i] for i in ids if i in lookup], dtype=np.float64)
        for b, ids in members.items()
    }


def plot_nz(
    result: NzResult,
    path: Path,
    title: str | None = None,
    truth: dict[int, np.ndarray] | None = None,
) -> Path:
    """PNG of each bin's n(z) with its jackknife 1-sigma band, scaled by its objects; with
    ``truth``, each bin's histogram of true redshifts drawn as a dashed step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for b in result.bins:
        if result.assign == "none":
            label = f"all ({b.n_objects} objects)"
        else:
            lo, hi = result.edges[b.bin - 1], result.edges[b.bin]  # type: ignore[index]
            label = f"{lo:g} ≤ z < {hi:g} ({b.n_objects})"
        line = ax.plot(result.z, b.nz * b.n_objects, lw=1.4, label=label)[0]
        if b.nz_err is not None:
            ax.fill_between(
                result.z,
                (b.nz - b.nz_err) * b.n_objects,
                (b.nz + b.nz_err) * b.n_objects,
                color=line.get_color(),
                alpha=0.25,
                lw=0,
            )
        if truth is not None and b.bin in truth and truth[b.bin].size:
            edges = np.linspace(result.z[0], result.z[-1], 61)
            counts, _ = np.histogram(truth[b.bin], edges)
            ax.stairs(counts / np.diff(edges), edges, color=line.get_color(), ls="--", lw=0.9)
    how = {"none": "", "median": " (bins by posterior median)"}.get(
        result.assign, " (bins by largest P(z in bin))"
    )
    ax.set(
        xlabel="redshift z", ylabel="dN/dz (stacked posteriors)", xlim=(result.z[0], result.z[-1])
    )
    ax.set_ylim(bottom=0)
    note = "; dashed: true z" if truth is not None else ""
    ax.set_title(title or f"n(z) of run {result.run_id}{how}; bands: jackknife 1σ{note}")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
