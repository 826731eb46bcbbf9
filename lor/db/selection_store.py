"""SQL over selections of stored posteriors: n(z) per tomographic bin, cone search, cross-match.

The functions and aggregates themselves live in ``lor/db/sql/0005_nz_sky.sql``; this module only
calls them. A user's ``where`` is a SQL condition over the columns of
``lor.run_posteriors(run)`` -- the same text they would type in psql -- so it is spliced in
as written and runs in a READ ONLY transaction: it can select, never change anything.
Every value lor itself passes is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

#: How objects are put in tomographic bins: by the posterior median, or by the bin that
#: holds most of the posterior's probability.
BIN_EXPRESSIONS = {
    "none": "1",
    "median": "lor.tomo_bin(z_q50, CAST(:edges AS double precision[]))",
    "probability": "lor.pz_bin(params, CAST(:edges AS double precision[]), :p_min)",
}


@dataclass(frozen=True)
class BinNz:
    """n(z) of one bin: density on the grid, its jackknife error, objects and groups used."""

    bin: int
    nz: np.ndarray
    nz_err: np.ndarray | None
    n_objects: int
    n_groups: int


def _selection(where: str | None) -> str:
    return (
        f"SELECT * FROM lor.run_posteriors(:run) WHERE ({where})"
        if where
        else ("SELECT * FROM lor.run_posteriors(:run)")
    )


def read_only(conn: Connection) -> None:
    """Make the current transaction READ ONLY (a user's ``where`` runs inside it)."""
    conn.execute(text("SET TRANSACTION READ ONLY"))


def representations_in(conn: Connection, run_id: int, where: str | None) -> list[str]:
    """Distinct representation names among the selected posteriors (NULL params excluded)."""
    read_only(conn)
    sql = (
        f"SELECT DISTINCT representation_name FROM ({_selection(where)}) s WHERE params IS NOT NULL"
    )
    return sorted(conn.execute(text(sql), {"run": run_id}).scalars())


def nz_by_bin(
    conn: Connection,
    run_id: int,
    where: str | None,
    zmin: float,
    zmax: float,
    n: int,
    assign: str = "none",
    edges: list[float] | None = None,
    p_min: float = 0.0,
) -> list[BinNz]:
    """n(z) with jackknife errors of each tomographic bin of the selection, in one query.

    Objects are grouped by ``lor.nz_group(catalog_id)`` and bin; ``lor.nz`` runs once per
    (bin, group) and ``lor.nz_jackknife`` combines the groups of each bin.
    """
    read_only(conn)
    sql = f"""
        WITH g AS (
          SELECT {BIN_EXPRESSIONS[assign]} AS bin, count(*) AS n,
                 lor.nz(params, :zmin, :zmax, :n) AS nz
          FROM ({_selection(where)}) s
          WHERE params IS NOT NULL
          GROUP BY 1, lor.nz_group(catalog_id))
        SELECT bin, (lor.nz_jackknife(nz, n)).* FROM g WHERE bin IS NOT NULL
        GROUP BY bin ORDER BY bin"""
    params: dict[str, Any] = {"run": run_id, "zmin": zmin, "zmax": zmax, "n": n}
    if assign != "none":
        params |= {"edges": list(edges or []), "p_min": p_min}
    rows = conn.execute(text(sql), params).all()
    return [
        BinNz(
            bin=int(r.bin),
            nz=np.asarray(r.nz, dtype=np.float64),
            nz_err=None if r.nz_err is None else np.asarray(r.nz_err, dtype=np.float64),
            n_objects=int(r.n_objects),
            n_groups=int(r.n_groups),
        )
        for r in rows
    ]


def bin_members(
    conn: Connection,
    run_id: int,
    where: str | None,
    assign: str,
    edges: list[float] | None,
    p_min: float = 0.0,
) -> dict[int, np.ndarray]:
    """Catalog ids of the objects in each bin (those with a posterior), as ``nz_by_bin``."""
    read_only(conn)
    sql = f"""SELECT {BIN_EXPRESSIONS[assign]} AS bin, array_agg(catalog_id) AS ids
              FROM ({_selection(where)}) s WHERE params IS NOT NULL
              GROUP BY 1 HAVING {BIN_EXPRESSIONS[assign]} IS NOT NULL"""
    params: dict[str, Any] = {"run": run_id}
    if assign != "none":
        params |= {"edges": list(edges or []), "p_min": p_min}
    return {int(r.bin): np.asarray(r.ids, np.int64) for r in conn.execute(text(sql), params)}


def nz_grid(conn: Connection, zmin: float, zmax: float, n: int) -> np.ndarray:
    """The grid lor.nz evaluates on (lor.nz_grid)."""
    grid = conn.execute(
        text("SELECT lor.nz_grid(:zmin, :zmax, :n)"), {"zmin": zmin, "zmax": zmax, "n": n}
    ).scalar_one()
    return np.asarray(grid, dtype=np.float64)


#: Columns of a cone or cross-match answer that lor returns to Python callers.
CONE_COLUMNS = (
    "sep_deg", "catalog_id", "ra", "dec", "tract_id", "run_id", "posterior_id", "z_q16",
    "z_q50", "z_q84", "log_mstar_q50", "log_sfr_q50", "ood_flags",
)  # fmt: skip


def cone(
    conn: Connection, ra: float, dec: float, radius_deg: float, run_id: int | None = None
) -> list[Any]:
    """Objects within ``radius_deg`` of (ra, dec) with their latest posterior, nearest first."""
    sql = f"""SELECT {", ".join(CONE_COLUMNS)}
              FROM lor.cone(:ra, :dec, :r, CAST(:run AS integer)) ORDER BY sep_deg, catalog_id"""
    return list(conn.execute(text(sql), {"ra": ra, "dec": dec, "r": radius_deg, "run": run_id}))


CROSSMATCH_COLUMNS = (
    "idx", "match_rank", "sep_arcsec", "catalog_id", "ra", "dec", "tract_id", "run_id",
    "posterior_id", "z_q16", "z_q50", "z_q84", "log_mstar_q50", "log_sfr_q50", "ood_flags",
)  # fmt: skip


def crossmatch(
    conn: Connection,
    ra: np.ndarray,
    dec: np.ndarray,
    radius_arcsec: float,
    run_id: int | None = None,
    nearest_only: bool = True,
) -> list[Any]:
    """Matches of external positions (idx is 1-based) within ``radius_arcsec``."""
    sql = f"""SELECT {", ".join(CROSSMATCH_COLUMNS)}
             FROM lor.crossmatch(CAST(:ra AS double precision[]), CAST(:dec AS double precision[]),
                                 :r, CAST(:run AS integer))"""
    if nearest_only:
        sql += " WHERE match_rank = 1"
    args = {
        "ra": np.asarray(ra, dtype=np.float64).tolist(),
        "dec": np.asarray(dec, dtype=np.float64).tolist(),
        "r": radius_arcsec,
        "run": run_id,
    }
    return list(conn.execute(text(sql), args))
