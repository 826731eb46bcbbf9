"""``lor demo``: the main job end to end on the example catalog shipped in the repo.

Set up the schema, register the shipped (hash-pinned) emulator and estimator and the interim
prior, ingest the example catalog, create a run, compute every posterior in-process, then
query the posteriors with SQL and plot photo-z against the simulation's truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from lor.catalog.example import EXAMPLE_CATALOG, EXAMPLE_TRUTH
from lor.catalog.ingest import ingest_catalog
from lor.catalog.truth import ingest_truth
from lor.config import get_settings
from lor.db.engine import make_engine
from lor.db.migrate import upgrade
from lor.db.registry import Registry
from lor.inference.validation import OUTLIER_CUT, photoz_metrics

DEMO_RELEASE = "example-DR1"
INTERIM_PRIOR_NAME = "interim-population-v1"
DEMO_RUN = "example-demo"

#: The demo's SQL question: P(0.8 < z < 1.0) > 0.9 in the busiest tract.
Z1, Z2, P_MIN = 0.8, 1.0, 0.9


def register_shipped_models(engine: Engine, registry: Registry | None = None) -> dict[str, int]:
    """Model versions for the shipped artifacts (copied into the model store) and the
    interim prior (idempotent); what ``lor models register --shipped`` does."""
    from lor.db.model_store import shipped_artifacts
    from lor.inference.prior_registry import estimator_prior

    registry = registry or Registry(engine)
    ids = registry.models.register_shipped()
    # The interim prior is the one the shipped estimator was trained under (its spec says
    # which family and hyperparameters): Step 1 posteriors are under it.
    folder, _ = shipped_artifacts()["estimator"]
    spec = json.loads((folder / "spec.json").read_text())
    with engine.begin() as conn:
        ids["prior"] = registry.priors.register(
            conn,
            INTERIM_PRIOR_NAME,
            estimator_prior(spec).as_record(),
            "interim",
            {"source": "the shipped estimator's training prior", "estimator": spec["name"]},
        )
    return ids


def run_demo(out: Path | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    from lor.errors import NotFoundError
    from lor.runs.lifecycle import create_run, get_run
    from lor.runs.processing import process_run

    out = out or get_settings().home / "demo"
    out.mkdir(parents=True, exist_ok=True)
    engine = make_engine()
    echo(f"database: {engine.url.render_as_string()}")
    echo(f"schema at revision {upgrade(engine)}")
    ids = register_shipped_models(engine)
    echo(
        f"model versions: emulator {ids['emulator']}, estimator {ids['estimator']}, prior {ids['prior']}"
    )
    summary = ingest_catalog(engine, EXAMPLE_CATALOG, DEMO_RELEASE)
    echo(
        f"ingested {EXAMPLE_CATALOG.name}: read {summary.rows_read}, new {summary.rows_new}, "
        f"unchanged {summary.rows_unchanged}, rejected {summary.rows_rejected}"
    )
    truth = ingest_truth(engine, EXAMPLE_TRUTH, "lor example catalog (simulation truth)")
    echo(f"true redshifts of the example loaded into lor.truth: {truth}")
    try:  # a second demo reuses its run (and finishes it if it was interrupted)
        run = get_run(engine, DEMO_RUN)
        echo(f"run {run.name} (id {run.id}) exists: resuming")
    except NotFoundError:
        queued = create_run(
            engine,
            DEMO_RELEASE,
            name=DEMO_RUN,
            emulator=ids["emulator"],
            estimator=ids["estimator"],
            prior=ids["prior"],
        )
        run = queued.run
        echo(f"run {run.name} (id {run.id}): {queued.enqueued} objects queued")
    counts = process_run(engine, run.id)
    posteriors = Registry(engine).posteriors
    with engine.connect() as conn:
        stored = posteriors.stored_count(conn, run.id)
    echo(
        f"processed now: {counts.done} posteriors stored, {counts.failed} failed; run holds {stored}"
    )

    with engine.connect() as conn:
        tract = posteriors.busiest_tract(conn, run.id)
        hits = [] if tract is None else posteriors.confident(conn, run.id, tract, Z1, Z2, P_MIN)
        flags = posteriors.flag_counts(conn, run.id)
        rows = posteriors.photoz(conn, run.id)
    echo(
        f"SQL: objects in tract {tract} with P({Z1} < z < {Z2}) > {P_MIN} and no OOD flag: "
        f"{len(hits)}"
    )
    for row in hits[:5]:
        echo(f"  objectId {row.catalog_id}: z50 = {row.z_q50:.3f}, P = {row.p_z:.3f}")
    echo("OOD flag bits -> objects: " + ", ".join(f"{f}: {n}" for f, n in flags.items()))
    plot = _plot_photoz(rows, out / "demo_photoz.png")
    if len(rows) > summary.rows_read:
        echo(f"the run also covers {len(rows) - summary.rows_read} objects of other catalogs "
             f"in this database (current as of {DEMO_RELEASE}); the plot shows the example's")  # fmt: skip
    echo(f"plot: {plot}")
    engine.dispose()
    return {
        "ingest": summary.as_dict(),
        "run_id": run.id,
        "posteriors": counts.done,
        "hits": len(hits),
        "plot": str(plot),
    }


def _plot_photoz(rows, path: Path) -> Path:  # type: ignore[no-untyped-def]
    """Photo-z against truth for the example's objects, with a residual panel.

    Only objects in the example's truth table are drawn: the run covers every object current
    as of the demo release, which on a database holding other catalogs includes theirs (a
    lookup of their truth was the demo's KeyError). OOD-flagged objects are marked; the
    metrics are over the unflagged ones, and the caption defines them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.parquet as pq

    truth = pq.read_table(EXAMPLE_TRUTH, columns=["objectId", "redshift"]).to_pydict()
    z_true = dict(zip(truth["objectId"], truth["redshift"], strict=True))
    rows = [r for r in rows if r.catalog_id in z_true]
    zt = np.array([z_true[r.catalog_id] for r in rows])
    zp = np.array([r.z_q50 for r in rows])
    err = np.clip([[r.z_q50 - r.z_q16 for r in rows], [r.z_q84 - r.z_q50 for r in rows]], 0, None)
    flagged = np.array([r.ood_flags != 0 for r in rows], bool)
    dz = (zp - zt) / (1 + zt)
    m = photoz_metrics(zp[~flagged], zt[~flagged])
    fig, (ax, res) = plt.subplots(
        2, 1, figsize=(6, 7.4), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]}
    )
    for sel, style in ((~flagged, {"color": "C0", "label": f"no OOD flag ({(~flagged).sum()})"}),
                       (flagged, {"color": "C3", "label": f"OOD-flagged ({flagged.sum()})"})):  # fmt: skip
        if sel.any():
            ax.errorbar(zt[sel], zp[sel], yerr=err[:, sel], fmt=".", ms=2.5, lw=0.3,
                        alpha=0.55 if style["color"] == "C0" else 0.9, **style)  # fmt: skip
            res.plot(zt[sel], dz[sel], ".", ms=2.5, alpha=0.6, color=style["color"])
    grid = np.linspace(0, 4, 50)
    ax.plot(grid, grid, "k-", lw=0.6)
    for sign in (-1, 1):
        ax.plot(grid, grid + sign * OUTLIER_CUT * (1 + grid), "k--", lw=0.6,
                label=f"outlier cut |dz| = {OUTLIER_CUT}" if sign > 0 else None)  # fmt: skip
        res.axhline(sign * OUTLIER_CUT, color="k", ls="--", lw=0.6)
    res.axhline(0, color="k", lw=0.6)
    ax.set(ylabel="posterior median z (16-84% bars)", xlim=(0, 4), ylim=(0, 4))
    res.set(xlabel="true redshift", ylabel="dz = (z50 - z) / (1 + z)", ylim=(-0.5, 0.5))
    ax.legend(loc="upper left", fontsize=8, markerscale=3)
    ax.set_title(
        f"lor demo: {len(rows)} objects; unflagged: sigma_NMAD = {m['sigma_nmad']:.3f}, "
        f"outliers = {m['outlier_frac']:.1%}, bias = {m['bias']:+.4f}",
        fontsize=9,
    )
    fig.text(
        0.02, -0.01,
        "dz = (z_phot - z_true) / (1 + z_true), z_phot = posterior median. "
        "sigma_NMAD = 1.4826 x median(|dz - median(dz)|);\n"
        f"outliers: fraction with |dz| > {OUTLIER_CUT} (dashed); bias = median(dz). "
        "Metrics over objects without OOD flags; flagged objects in red.",
        fontsize=7.5, va="top",
    )  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
