"""``lor demo``: the main job end to end on the example catalog shipped in the repo.

Set up the schema, register the shipped (hash-pinned) emulator and estimator and the interim
prior, ingest the example catalog, create a run, compute every posterior in-process, then
query the posteriors with SQL and plot photo-z against the simulation's truth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from lor.config import get_settings
from lor.db.engine import make_engine
from lor.db.migrate import upgrade
from lor.pipeline.example_catalog import EXAMPLE_CATALOG, EXAMPLE_TRUTH
from lor.pipeline.ingest import ingest_catalog

DEMO_RELEASE = "example-DR1"
INTERIM_PRIOR_NAME = "interim-population-v1"
DEMO_RUN = "example-demo"

PROBABILITY_QUERY = """
SELECT o.catalog_id, p.z_q50, lor.pz_prob(p.params, 0.8, 1.0) AS p_08_10
FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)
WHERE p.run_id = :run AND p.tract_id = :tract
  AND p.ood_flags = 0 AND lor.pz_prob(p.params, 0.8, 1.0) > 0.9
ORDER BY p_08_10 DESC"""


def register_shipped_models(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Model versions for the shipped artifacts and the interim prior (idempotent)."""
    from lor.db.model_store import register_prior_version
    from lor.emulators.registry import SHIPPED_DIR as EMU_DIR
    from lor.emulators.registry import SHIPPED_EMULATOR, register_emulator
    from lor.inference.prior import PopulationPrior
    from lor.inference.registry import SHIPPED_DIR, SHIPPED_ESTIMATOR, register_estimator

    ids = {
        "emulator": register_emulator(engine, EMU_DIR / SHIPPED_EMULATOR[0], SHIPPED_EMULATOR[1]),
        "estimator": register_estimator(
            engine, SHIPPED_DIR / SHIPPED_ESTIMATOR[0], SHIPPED_ESTIMATOR[1]
        ),
    }
    with engine.begin() as conn:
        ids["prior"] = register_prior_version(
            conn,
            INTERIM_PRIOR_NAME,
            PopulationPrior().as_record(),
            "interim",
            {"source": "lor.inference.prior"},
        )
    return ids


def run_demo(out: Path | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    from lor.errors import NotFoundError
    from lor.pipeline.processing import process_run
    from lor.pipeline.runs import create_run, get_run

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
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM lor.posteriors WHERE run_id = :r"), {"r": run.id}
        ).scalar_one()
    echo(
        f"processed now: {counts.done} posteriors stored, {counts.failed} failed; run holds {stored}"
    )

    with engine.connect() as conn:
        tract = conn.execute(
            text(
                "SELECT tract_id FROM lor.posteriors WHERE run_id = :r GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            ),
            {"r": run.id},
        ).scalar_one()
        hits = conn.execute(text(PROBABILITY_QUERY), {"run": run.id, "tract": tract}).all()
        flags = conn.execute(
            text(
                "SELECT ood_flags, count(*) FROM lor.posteriors WHERE run_id = :r GROUP BY 1 ORDER BY 1"
            ),
            {"r": run.id},
        ).all()
        rows = conn.execute(
            text(
                "SELECT o.catalog_id, p.z_q50, p.z_q16, p.z_q84 FROM lor.posteriors p "
                "JOIN lor.objects o USING (tract_id, object_id) WHERE p.run_id = :r AND p.params IS NOT NULL"
            ),
            {"r": run.id},
        ).all()
    echo(f"SQL: objects in tract {tract} with P(0.8 < z < 1.0) > 0.9 and no OOD flag: {len(hits)}")
    for row in hits[:5]:
        echo(f"  objectId {row.catalog_id}: z50 = {row.z_q50:.3f}, P = {row.p_08_10:.3f}")
    echo("OOD flag bits -> objects: " + ", ".join(f"{f.ood_flags}: {f.count}" for f in flags))
    plot = _plot_photoz(rows, out / "demo_photoz.png")
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.parquet as pq

    truth = pq.read_table(EXAMPLE_TRUTH, columns=["objectId", "redshift"]).to_pydict()
    z_true = dict(zip(truth["objectId"], truth["redshift"], strict=True))
    zt = np.array([z_true[r.catalog_id] for r in rows])
    zp = np.array([r.z_q50 for r in rows])
    err = np.array([[r.z_q50 - r.z_q16 for r in rows], [r.z_q84 - r.z_q50 for r in rows]])
    dz = (zp - zt) / (1 + zt)
    nmad = 1.4826 * np.median(np.abs(dz - np.median(dz)))
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.errorbar(zt, zp, yerr=np.clip(err, 0, None), fmt=".", ms=2, lw=0.3, alpha=0.5)
    ax.plot([0, 4], [0, 4], "k-", lw=0.6)
    ax.set(xlabel="true redshift", ylabel="posterior median (16-84%)", xlim=(0, 4), ylim=(0, 4))
    ax.set_title(
        f"lor demo: {len(rows)} objects, sigma_NMAD = {nmad:.3f}, outliers = {np.mean(np.abs(dz) > 0.15):.1%}"
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
