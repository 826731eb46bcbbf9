"""Read-only queries behind the run dashboard (``lor serve``).

Everything here only reads, and the dashboard runs it as ``lor_reader`` in read-only
transactions (:func:`lor.dashboard.app.reader_engine`). Functions take an open
``Connection``; time series come back as plain lists for JSON and for the plots.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from lor.errors import NotFoundError

#: OOD flag bits (lor.inference.flags.Flag) the dashboard reports, lowest first.
N_FLAG_BITS = 9
#: The role every dashboard connection switches to (granted SELECT only, by migration 0001).
READER_ROLE = "lor_reader"


def become_reader(dbapi_conn: Any) -> None:
    """On a new DBAPI connection: act as :data:`READER_ROLE`, in read-only transactions."""
    with dbapi_conn.cursor() as cur:
        cur.execute(f"SET ROLE {READER_ROLE}")
        cur.execute("SET default_transaction_read_only = on")
    dbapi_conn.commit()


def ping(conn: Connection) -> None:
    """One round trip (raises the driver's error when the connection cannot be used)."""
    conn.execute(text("SELECT 1"))


def truth_count(conn: Connection, run_id: int) -> int:
    """Objects of a run with a posterior and a known redshift in ``lor.truth``."""
    return int(
        conn.execute(
            text(
                """SELECT count(*) FROM lor.posteriors p
                   JOIN lor.objects o ON o.tract_id = p.tract_id AND o.object_id = p.object_id
                   JOIN lor.truth t ON t.catalog_id = o.catalog_id WHERE p.run_id = :r"""
            ),
            {"r": run_id},
        ).scalar_one()
    )


def runs(conn: Connection) -> list[dict[str, Any]]:
    """Every run, newest first, with its item counts by state."""
    rows = conn.execute(
        text(
            """SELECT r.id, r.name, r.kind, r.status, rel.name AS release, r.created_at,
                      r.calibration_version_id, r.parent_run_id,
                      coalesce(c.pending, 0) AS pending, coalesce(c.claimed, 0) AS claimed,
                      coalesce(c.done, 0) AS done, coalesce(c.failed, 0) AS failed
               FROM lor.processing_runs r
               JOIN lor.releases rel ON rel.id = r.release_id
               LEFT JOIN LATERAL (
                   SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
                          count(*) FILTER (WHERE state = 'claimed') AS claimed,
                          count(*) FILTER (WHERE state = 'done') AS done,
                          count(*) FILTER (WHERE state = 'failed') AS failed
                   FROM lor.work_items w WHERE w.run_id = r.id) c ON TRUE
               ORDER BY r.id DESC"""
        )
    ).all()
    return [dict(r._mapping) | {"created_at": r.created_at.isoformat()} for r in rows]


def progress(conn: Connection, run_id: int, buckets: int = 60) -> dict[str, list[float]]:
    """Items done and failed over time (cumulative, ``buckets`` steps from the run's start to
    now, or to its last stored item once it is complete).

    Done comes from the posteriors' ``created_at``; failed from the failed items'
    ``updated_at``; the rest of the run's items were pending or claimed at each time.
    """
    row = conn.execute(
        text(
            """SELECT extract(epoch FROM r.created_at),
                      extract(epoch FROM CASE WHEN r.status = 'open' THEN now() ELSE greatest(
                          (SELECT max(created_at) FROM lor.posteriors p WHERE p.run_id = r.id),
                          (SELECT max(updated_at) FROM lor.work_items w WHERE w.run_id = r.id),
                          r.created_at + interval '1 second') END),
                      (SELECT count(*) FROM lor.work_items w WHERE w.run_id = r.id)
               FROM lor.processing_runs r WHERE r.id = :r"""
        ),
        {"r": run_id},
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no processing run with id {run_id}")
    start, now, total = float(row[0]), float(row[1]), int(row[2])
    width = max((now - start) / buckets, 1e-3)
    series = {}
    for name, sql in (
        ("done", "SELECT created_at AS t FROM lor.posteriors WHERE run_id = :r"),
        (
            "failed",
            "SELECT updated_at AS t FROM lor.work_items WHERE run_id = :r AND state = 'failed'",
        ),
    ):
        counts = dict(
            conn.execute(
                text(
                    f"""SELECT least(:n - 1, floor((extract(epoch FROM t) - :start) / :w))::int,
                               count(*) FROM ({sql}) s GROUP BY 1"""
                ),
                {"r": run_id, "n": buckets, "start": start, "w": width},
            ).all()
        )
        acc, out = 0, []
        for b in range(buckets):
            acc += counts.get(b, 0)
            out.append(acc)
        series[name] = out
    times = [start + width * (b + 1) for b in range(buckets)]
    return {
        "t": times,
        "done": series["done"],
        "failed": series["failed"],
        "remaining": [total - d - f for d, f in zip(series["done"], series["failed"], strict=True)],
    }


def failures(conn: Connection, run_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """Errors of failed items (and of items that failed once and wait to be retried)."""
    rows = conn.execute(
        text(
            """SELECT w.last_error AS error, count(*) AS items,
                      count(*) FILTER (WHERE w.state = 'failed') AS failed,
                      max(w.updated_at) AS last_seen
               FROM lor.work_items w
               WHERE w.run_id = :r AND w.last_error IS NOT NULL AND w.state <> 'done'
               GROUP BY w.last_error ORDER BY failed DESC, items DESC LIMIT :n"""
        ),
        {"r": run_id, "n": limit},
    ).all()
    return [dict(r._mapping) | {"last_seen": r.last_seen.isoformat()} for r in rows]


def ood_rates(conn: Connection, run_id: int) -> dict[str, Any]:
    """Posteriors per tract and, per flag bit, how many of them carry it."""
    bits = ", ".join(
        f"count(*) FILTER (WHERE ood_flags & {1 << b} <> 0)" for b in range(N_FLAG_BITS)
    )
    rows = conn.execute(
        text(
            f"""SELECT tract_id, count(*), {bits} FROM lor.posteriors
                WHERE run_id = :r GROUP BY tract_id ORDER BY tract_id"""
        ),
        {"r": run_id},
    ).all()
    return {
        "tracts": [r[0] for r in rows],
        "objects": [r[1] for r in rows],
        "flagged": [list(r[2:]) for r in rows],  # [tract][bit]
    }


def calibration_versions(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            """SELECT v.id, v.name, v.method, v.parent_id, v.created_at,
                      (SELECT count(DISTINCT tract_id) FROM lor.calibration_terms t
                       WHERE t.calibration_version_id = v.id) AS tracts
               FROM lor.calibration_versions v ORDER BY v.id DESC"""
        )
    ).all()
    return [dict(r._mapping) | {"created_at": r.created_at.isoformat()} for r in rows]


def calibration_terms(conn: Connection, version_id: int) -> list[dict[str, Any]]:
    """Per tract and band: zeropoint offset and noise scale, with their errors (or None)."""
    rows = conn.execute(
        text(
            """SELECT tract_id, band, zeropoint_offset_mag, zeropoint_offset_err, noise_scale,
                      noise_scale_err
               FROM lor.calibration_terms WHERE calibration_version_id = :v
               ORDER BY tract_id, band"""
        ),
        {"v": version_id},
    ).all()
    return [dict(r._mapping) for r in rows]


def truth_comparison(conn: Connection, run_id: int, limit: int = 20_000) -> dict[str, list]:
    """Posterior median, 16/84% quantiles, PIT = CDF(z_true) and flags of objects with truth."""
    rows = conn.execute(
        text(
            """SELECT t.redshift, p.z_q50, p.z_q16, p.z_q84, lor.pz_cdf(p, t.redshift),
                      p.ood_flags
               FROM lor.posteriors p
               JOIN lor.objects o ON o.tract_id = p.tract_id AND o.object_id = p.object_id
               JOIN lor.truth t ON t.catalog_id = o.catalog_id
               WHERE p.run_id = :r AND p.params IS NOT NULL
               LIMIT :n"""
        ),
        {"r": run_id, "n": limit},
    ).all()
    names = ("z_true", "z_q50", "z_q16", "z_q84", "pit", "ood_flags")
    return {n: [r[i] for r in rows] for i, n in enumerate(names)}


def nz(conn: Connection, run_id: int, zmax: float = 4.0, points: int = 120) -> dict[str, list]:
    """The run's n(z): the mean of its posteriors' redshift densities (``lor.nz``, SQL)."""
    grid, density = conn.execute(
        text(
            """SELECT lor.nz_grid(0, :zmax, :n),
                      (SELECT lor.nz(params, 0, :zmax, :n) FROM lor.posteriors
                       WHERE run_id = :r AND params IS NOT NULL)"""
        ),
        {"r": run_id, "zmax": zmax, "n": points},
    ).one()
    return {"z": list(grid or []), "density": list(density or [])}
