"""Posterior slice of the store: what calibration, export and the demo read of a run's
stored posteriors (through ``lor.run_posteriors``, the latest row of every object)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Row, text

from lor.db.params_codec import join_rows
from lor.posteriors.base import SUMMARY_COLUMNS

#: Objects of one tract of a run with P(0.8 < z < 1.0) > 0.9 and no OOD flag (the README's
#: first query, as the demo runs it); the row form of ``lor.pz_prob`` checks each row's
#: representation (migration 0009).
CONFIDENT_QUERY = """
SELECT o.catalog_id, p.z_q50, lor.pz_prob(p, :z1, :z2) AS p_z
FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)
WHERE p.run_id = :run AND p.tract_id = :tract
  AND p.ood_flags = 0 AND lor.pz_prob(p, :z1, :z2) > :p_min
ORDER BY p_z DESC"""


class PosteriorManager:
    """Reads of stored posteriors; every method runs on the caller's connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def params(
        self, conn: Connection, run_id: int, tracts: Sequence[int] | None = None
    ) -> np.ndarray:
        """The run's stored posterior parameters (rows with params), optionally of some tracts."""
        sql = "SELECT params, params_rest FROM lor.run_posteriors(:r) WHERE params IS NOT NULL"
        args: dict[str, Any] = {"r": run_id}
        if tracts:
            sql += " AND tract_id = ANY(:t)"
            args["t"] = list(tracts)
        rows = conn.execute(text(sql), args).all()
        return join_rows([r.params for r in rows], [r.params_rest for r in rows])

    def photometry(
        self, conn: Connection, run_id: int, excluded_flags: int,
        tracts: Sequence[int] | None = None,
    ) -> list[Row[Any]]:  # fmt: skip
        """``(tract_id, flux, flux_err, ebv)`` of the run's objects with every band measured
        and none of ``excluded_flags`` set on their posterior (ebv NaN where unknown)."""
        sql = (
            "SELECT p.tract_id, o.flux, o.flux_err, coalesce(o.ebv, 'NaN') "
            "FROM lor.run_posteriors(:r) p JOIN lor.objects o "
            "ON o.tract_id = p.tract_id AND o.object_id = p.object_id "
            "WHERE p.ood_flags & :excluded = 0 AND o.missing_mask = 0"
        )
        args: dict[str, Any] = {"r": run_id, "excluded": int(excluded_flags)}
        if tracts:
            sql += " AND p.tract_id = ANY(:t)"
            args["t"] = list(tracts)
        return list(conn.execute(text(sql), args).all())

    def counts(self, conn: Connection, run_id: int) -> tuple[int, int]:
        """``(objects, objects with parameters)`` of the run."""
        total, with_params = conn.execute(
            text("SELECT count(*), count(params) FROM lor.run_posteriors(:r)"), {"r": run_id}
        ).one()
        return int(total), int(with_params)

    def representations(self, conn: Connection, run_id: int) -> list[tuple[str, str]]:
        """The distinct ``(name, version)`` representations of the run's stored parameters."""
        rows = conn.execute(
            text(
                """SELECT DISTINCT representation_name, representation_version
                   FROM lor.run_posteriors(:r) WHERE params IS NOT NULL"""
            ),
            {"r": run_id},
        ).all()
        return [(str(n), str(v)) for n, v in rows]

    def stream(
        self, conn: Connection, run_id: int, columns: Sequence[str], chunk_rows: int,
        only_with_params: bool,
    ) -> Iterator[Sequence[Row[Any]]]:  # fmt: skip
        """The run's rows (``columns`` of ``lor.run_posteriors``), ``chunk_rows`` at a time
        from a server-side cursor, so memory stays flat on runs of any size."""
        known = set(RUN_POSTERIOR_COLUMNS)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"not columns of lor.run_posteriors: {unknown}")
        where = " WHERE params IS NOT NULL" if only_with_params else ""
        query = text(f"SELECT {', '.join(columns)} FROM lor.run_posteriors(:r){where}")
        result = conn.execute(
            query.execution_options(stream_results=True, max_row_buffer=chunk_rows),
            {"r": run_id},
        )
        yield from result.partitions(chunk_rows)

    def stored_count(self, conn: Connection, run_id: int) -> int:
        """Rows the run has written to ``lor.posteriors`` (every version, every object)."""
        return int(
            conn.execute(
                text("SELECT count(*) FROM lor.posteriors WHERE run_id = :r"), {"r": run_id}
            ).scalar_one()
        )

    def busiest_tract(self, conn: Connection, run_id: int) -> int | None:
        """The tract holding most of the run's posteriors (None: the run has none)."""
        return conn.execute(
            text(
                "SELECT tract_id FROM lor.posteriors WHERE run_id = :r "
                "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
            ),
            {"r": run_id},
        ).scalar_one_or_none()

    def confident(
        self, conn: Connection, run_id: int, tract_id: int, z1: float, z2: float, p_min: float
    ) -> list[Row[Any]]:
        """``(catalog_id, z_q50, p_z)`` of objects of a tract with P(z1 < z < z2) > p_min
        and no OOD flag, most probable first (:data:`CONFIDENT_QUERY`)."""
        args = {"run": run_id, "tract": tract_id, "z1": z1, "z2": z2, "p_min": p_min}
        return list(conn.execute(text(CONFIDENT_QUERY), args).all())

    def flag_counts(self, conn: Connection, run_id: int) -> dict[int, int]:
        """Objects per OOD flag word among the run's rows."""
        rows = conn.execute(
            text(
                "SELECT ood_flags, count(*) FROM lor.posteriors WHERE run_id = :r "
                "GROUP BY 1 ORDER BY 1"
            ),
            {"r": run_id},
        ).all()
        return {int(f): int(n) for f, n in rows}

    def photoz(self, conn: Connection, run_id: int) -> list[Row[Any]]:
        """``(catalog_id, z_q50, z_q16, z_q84, ood_flags)`` of the run's rows with params."""
        return list(
            conn.execute(
                text(
                    "SELECT o.catalog_id, p.z_q50, p.z_q16, p.z_q84, p.ood_flags "
                    "FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id) "
                    "WHERE p.run_id = :r AND p.params IS NOT NULL"
                ),
                {"r": run_id},
            ).all()
        )


#: The columns ``lor.run_posteriors(run)`` returns (lor/db/sql/0010_params_float16.sql).
RUN_POSTERIOR_COLUMNS = (
    "posterior_id", "run_id", "tract_id", "object_id", "catalog_id", "ra", "dec",
    "representation_name", "representation_version", "params", "params_rest",
    *SUMMARY_COLUMNS,
    "ood_flags", "method", "parent_posterior_id", "input_hash", "worker_host", "created_at",
)  # fmt: skip
