"""``lor export``: a run's posteriors as Parquet (every column), a qp ensemble (HDF5), or a
HATS catalog (:mod:`lor.interop.hats`: the Parquet export partitioned by HEALPix).

Both read ``lor.run_posteriors(run)`` (the latest posterior of every object of the run, see
``lor/db/sql/0003_posterior_views.sql``) through a server-side cursor in chunks, inside one
REPEATABLE READ transaction, so the count behind the progress bar and the rows written come
from the same snapshot even while workers are still writing, and memory stays flat.

- Parquet keeps everything: catalog id, tract, position, the summary columns, OOD flags,
  method, provenance and the stored representation parameters as ``list<float>`` (null for
  an object without a posterior). The run (model versions, code version) is in the file's
  key-value metadata under ``lor.export``.
- qp is the LSST DESC format for photo-z PDFs. The redshift marginal of a gmm_flow posterior
  is a Gaussian mixture in logit(z), not in z, so qp's mixture-of-Gaussians class cannot hold
  it; each marginal is evaluated on a fine z grid into a ``qp.interp`` ensemble instead,
  written with qp's own chunked HDF5 writer. Objects without a posterior have no PDF and are
  left out; every row's ancillary data carries its catalog id, run, posterior id and
  representation name/version, and the file's root attributes carry the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Connection, Engine
from tqdm.auto import tqdm

from lor.db import run_store
from lor.db.model_store import model_version
from lor.db.params_codec import join_rows
from lor.db.posterior_store import PosteriorManager
from lor.db.run_store import Run
from lor.errors import LorError
from lor.posteriors.base import SUMMARY_COLUMNS, PosteriorRepresentation, RepresentationError
from lor.posteriors.registry import from_row, get_representation
from lor.runs.lifecycle import run_as_dict
from lor.version import code_version

FORMATS = ("parquet", "qp", "hats")
DEFAULT_CHUNK_ROWS = 10_000
#: Default qp grid: this many points spanning the representation's redshift box.
DEFAULT_Z_POINTS = 401
#: qp (through tables_io) reads its own HDF5 layout only from *.hdf5 (*.h5 means pandas).
QP_SUFFIX = ".hdf5"
PARQUET_METADATA_KEY = b"lor.export"

#: Columns read from lor.run_posteriors, in output order (params last; params_rest is joined
#: into params by lor.db.params_codec and not written).
COLUMNS = (
    "catalog_id", "tract_id", "ra", "dec", *SUMMARY_COLUMNS, "ood_flags", "method", "run_id",
    "posterior_id", "object_id", "representation_name", "representation_version",
    "parent_posterior_id", "input_hash", "worker_host", "created_at", "params", "params_rest",
)  # fmt: skip
_UUIDS = ("posterior_id", "object_id", "parent_posterior_id", "input_hash")


class ExportError(LorError):
    """A run cannot be exported as asked (bad format or path, nothing to export)."""


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: ``objects`` rows, of which ``without_posterior`` had none.

    For qp, objects without a posterior are not in the file (``skipped``).
    """

    run_id: int
    run_name: str
    format: str
    path: str
    objects: int
    without_posterior: int
    skipped: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parquet_schema() -> pa.Schema:
    """The Arrow schema of a Parquet export (``tract_id`` is written as ``tract``)."""
    fields = [
        pa.field("catalog_id", pa.int64(), nullable=False),
        pa.field("tract", pa.int32(), nullable=False),
        pa.field("ra", pa.float64()),
        pa.field("dec", pa.float64()),
        *(pa.field(c, pa.float32()) for c in SUMMARY_COLUMNS),
        pa.field("ood_flags", pa.int32(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("run_id", pa.int32(), nullable=False),
        *(pa.field(c, pa.string()) for c in ("posterior_id", "object_id")),
        pa.field("representation_name", pa.string()),
        pa.field("representation_version", pa.string()),
        *(pa.field(c, pa.string()) for c in ("parent_posterior_id", "input_hash")),
        pa.field("worker_host", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("params", pa.list_(pa.float32())),
    ]
    return pa.schema(fields)


def default_export_path(run: str, fmt: str) -> Path:
    """``RUN.parquet``, ``RUN.hdf5`` (the suffix qp reads) or the folder ``RUN_hats`` here."""
    suffix = {"qp": QP_SUFFIX, "hats": "_hats"}.get(fmt, ".parquet")
    return Path(f"{run}{suffix}")


def export_run(
    engine: Engine,
    run: int | str,
    out: Path,
    fmt: str = "parquet",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    z_grid: Sequence[float] | np.ndarray | None = None,
    z_points: int = DEFAULT_Z_POINTS,
    progress: bool = True,
) -> ExportSummary:
    """Write the latest posterior of every object of ``run`` (id or name) to ``out``.

    ``fmt`` is ``parquet`` or ``qp``; for qp the PDFs are evaluated on ``z_grid``, by default
    ``z_points`` points spanning the representation's redshift box. The file is written
    next to ``out`` and moved into place when complete, so a failed export leaves nothing.
    """
    if fmt not in FORMATS:
        raise ExportError(f"export format must be one of {FORMATS}, not {fmt!r}")
    if chunk_rows < 1 or z_points < 2:
        raise ExportError(f"need chunk_rows >= 1 and z_points >= 2, not {chunk_rows}, {z_points}")
    out = Path(out)
    if fmt == "hats":  # a folder partitioned by hats-import from the Parquet export
        from lor.interop.hats import export_hats

        done = export_hats(engine, run, out, chunk_rows, progress)
        return ExportSummary(
            done["run_id"], done["run_name"], "hats", done["path"], done["objects"],
            done["without_posterior"], 0,
        )  # fmt: skip
    if fmt == "qp" and out.suffix != QP_SUFFIX:
        raise ExportError(f"qp reads HDF5 ensembles from *.hdf5 files: rename {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        found = run_store.get_run(conn, run)
        total, with_params = PosteriorManager(engine).counts(conn, found.id)
        try:
            if fmt == "parquet":
                _write_parquet(conn, found, partial, total, chunk_rows, progress)
                written, skipped = total, 0
            else:
                grid_spec = (z_grid, z_points)
                _write_qp(conn, found, partial, with_params, grid_spec, chunk_rows, progress)
                written, skipped = with_params, total - with_params
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    os.replace(partial, out)
    return ExportSummary(found.id, found.name, fmt, str(out), written, total - with_params, skipped)


def _chunks(
    conn: Connection, run_id: int, chunk_rows: int, only_with_params: bool
) -> Iterator[dict[str, list[Any]]]:
    """Column lists of the run's rows, ``chunk_rows`` at a time, from a server-side cursor."""
    posteriors = PosteriorManager(conn.engine)
    for rows in posteriors.stream(conn, run_id, COLUMNS, chunk_rows, only_with_params):
        columns = dict(zip(COLUMNS, (list(c) for c in zip(*rows, strict=True)), strict=True))
        for name in _UUIDS:
            columns[name] = [None if u is None else str(u) for u in columns[name]]
        z, rest = columns["params"], columns.pop("params_rest")
        has = [p is not None for p in z]
        full = iter(join_rows([p for p in z if p is not None], [r for r in rest if r is not None]))
        columns["params"] = [next(full) if h else None for h in has]
        yield columns


def _write_parquet(
    conn: Connection, run: Run, path: Path, total: int, chunk_rows: int, progress: bool
) -> None:
    import pyarrow.parquet as pq

    meta = {"run": run_as_dict(run), "lor_version": code_version(), "source": "lor.run_posteriors"}
    schema = parquet_schema().with_metadata({PARQUET_METADATA_KEY: json.dumps(meta, default=str)})
    with (
        pq.ParquetWriter(path, schema) as writer,
        tqdm(total=total, unit="obj", desc=f"export run {run.id}", disable=not progress) as bar,
    ):
        for columns in _chunks(conn, run.id, chunk_rows, only_with_params=False):
            columns["tract"] = columns.pop("tract_id")
            arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            bar.update(len(columns["catalog_id"]))


def representation_for(
    conn: Connection, run: Run, name: str, version: str, first_params: Sequence[float]
) -> PosteriorRepresentation:
    """The representation that wrote a run's rows, to evaluate their redshift marginals.

    From the configuration recorded with the run's estimator when it names this
    representation; otherwise from a stored row, for representations whose rows describe
    themselves (gmm_flow: K, D and the redshift box, all that the redshift marginal needs).
    """
    if run.estimator_version_id is not None:
        recorded = model_version(conn, run.estimator_version_id).training_ranges or {}
        rep = recorded.get("representation") or {}
        if (rep.get("name"), str(rep.get("version"))) == (name, version) and "config" in rep:
            return get_representation(name, version, **rep["config"])
    try:
        return from_row(name, version, first_params)
    except RepresentationError as exc:
        raise ExportError(
            f"run {run.name}: no configuration for posterior representation {name} v{version} "
            f"(the run pins no estimator that records it): {exc}"
        ) from exc


def _write_qp(
    conn: Connection,
    run: Run,
    path: Path,
    total: int,
    grid_spec: tuple[Sequence[float] | np.ndarray | None, int],
    chunk_rows: int,
    progress: bool,
) -> None:
    import h5py  # noqa: F401 - qp's HDF5 writer needs it; fail here with a clear import error
    import qp

    if total == 0:
        raise ExportError(f"run {run.name} has no posteriors with parameters to export as qp")
    kinds = PosteriorManager(conn.engine).representations(conn, run.id)
    if len(kinds) != 1:
        shown = ", ".join(f"{n} v{v}" for n, v in kinds)
        raise ExportError(f"run {run.name} mixes representations ({shown}); qp needs one")
    (name, version) = kinds[0]
    rep: PosteriorRepresentation | None = None
    grid: np.ndarray | None = None
    fout = groups = None
    start = 0
    bar = tqdm(total=total, unit="obj", desc=f"export run {run.id}", disable=not progress)
    try:
        for columns in _chunks(conn, run.id, chunk_rows, only_with_params=True):
            if rep is None:
                rep = representation_for(conn, run, name, version, columns["params"][0])
                grid = _z_grid(rep, *grid_spec)
            assert grid is not None
            ens = _ensemble(qp, rep, grid, columns)
            if fout is None:
                groups, fout = ens.initializeHdf5Write(str(path), total)
                fout.attrs["lor.export"] = json.dumps(
                    {"run": run_as_dict(run), "lor_version": code_version(),
                     "representation": {"name": name, "version": version},
                     "source": "lor.run_posteriors"}, default=str,
                )  # fmt: skip
            ens.writeHdf5Chunk(groups, start, start + ens.npdf)
            start += ens.npdf
            bar.update(ens.npdf)
        if fout is None or start != total:
            raise ExportError(f"run {run.name}: expected {total} posteriors, read {start}")
        ens.finalizeHdf5Write(fout)
        fout = None
    finally:
        bar.close()
        if fout is not None:
            fout.close()


def _z_grid(
    rep: PosteriorRepresentation, z_grid: Sequence[float] | np.ndarray | None, z_points: int
) -> np.ndarray:
    if z_grid is None:
        lo, hi = _z_box(rep)
        return np.linspace(lo, hi, z_points)
    grid = np.asarray(z_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.diff(grid) > 0):
        raise ExportError("the z grid must be at least two increasing values")
    return grid


def _z_box(rep: PosteriorRepresentation) -> tuple[float, float]:
    box_lo, box_hi = getattr(rep, "box_lo", None), getattr(rep, "box_hi", None)
    if box_lo is None or box_hi is None:
        raise ExportError(f"{rep!r} has no redshift box: pass an explicit z grid")
    return float(box_lo[0]), float(box_hi[0])


def _ensemble(qp: Any, rep: PosteriorRepresentation, grid: np.ndarray, columns: dict) -> Any:  # type: ignore[type-arg]
    """A ``qp.interp`` ensemble of one chunk's redshift marginals, with per-object ancillaries."""
    params = np.asarray(columns["params"], dtype=np.float32)
    try:
        pdf = rep.z_pdf(params, grid[None, :])
    except RepresentationError as exc:
        raise ExportError(f"stored posterior parameters are malformed: {exc}") from exc
    # Mass the grid captures before qp normalises: below 1 where the grid misses PDF mass
    # (a peak narrower than the spacing, or z beyond the grid).
    mass = np.trapezoid(pdf, grid, axis=1)
    if np.any(mass <= 0):
        bad = columns["catalog_id"][int(np.argmax(mass <= 0))]
        raise ExportError(
            f"object {bad}: its redshift PDF is zero on the whole grid; use a finer or wider grid"
        )
    ancil = {
        "catalog_id": np.asarray(columns["catalog_id"], np.int64),
        "tract": np.asarray(columns["tract_id"], np.int32),
        "ra": np.asarray(columns["ra"], np.float64),
        "dec": np.asarray(columns["dec"], np.float64),
        "ood_flags": np.asarray(columns["ood_flags"], np.int32),
        "z_mode": _floats(columns["z_mode"]),
        "z_q50": _floats(columns["z_q50"]),
        "grid_mass": mass,
        "run_id": np.asarray(columns["run_id"], np.int32),
        "posterior_id": np.asarray(columns["posterior_id"], dtype="S36"),
        # Fixed widths: qp sizes the file's datasets from the first chunk.
        "method": np.asarray(columns["method"], dtype="S16"),
        "representation_name": np.asarray(columns["representation_name"], dtype="S64"),
        "representation_version": np.asarray(columns["representation_version"], dtype="S16"),
    }
    return qp.Ensemble(qp.interp, data={"xvals": grid, "yvals": pdf}, ancil=ancil)


def _floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], np.float32)
