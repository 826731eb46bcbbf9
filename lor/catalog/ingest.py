"""``lor ingest``: stream a catalog file into ``lor.objects``, idempotently, in one transaction.

Per chunk: read columns → convert to nJy photometry → validate (bad rows become rejects with a
reason) → assign tracts → hash rows (deterministic object ids) → binary COPY into a temporary
staging table. At the end one merge stores only new and changed object versions. Any error
rolls the whole file back, so a malformed file leaves the database exactly as it was.

A file with more rows than ``lor.objects`` holds is a bulk load (:func:`_bulk_load`): the
table's indexes are dropped inside the transaction and built after the rows are in, by one
sort per partition, which costs a third of maintaining them row by row.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from tqdm.auto import tqdm

from lor.bands import DEFAULT_BAND_SET, BandSet, load_band_set
from lor.catalog.files import CatalogReader, Chunk
from lor.catalog.hashing import as_words, hash128_uuid, object_ids
from lor.catalog.photometry import (
    Photometry,
    check_plausible_fluxes,
    flux_unit_scale,
    photometry_from_fluxes,
    photometry_from_mags,
)
from lor.catalog.tracts import HEALPIX_SCHEME, healpix_tracts
from lor.db import catalog_store as store
from lor.db.copy_binary import Field, encode_rows
from lor.errors import ConfigError, IngestError
from lor.version import code_version

RUBIN_FLUX = "{band}_cModelFlux"
RUBIN_FLUX_ERR = "{band}_cModelFluxErr"


@dataclass
class CatalogColumns:
    """How to find lor's inputs in a catalog; defaults follow the Rubin Object table."""

    id: str = "objectId"
    ra: str = "coord_ra"
    dec: str = "coord_dec"
    tract: str | None = "tract"
    flux: str = RUBIN_FLUX
    flux_err: str = RUBIN_FLUX_ERR
    ebv: str | None = None
    units: str = "njy"  # or "abmag"
    band_set: str = DEFAULT_BAND_SET
    """The release's band set: a shipped name or a band-set YAML path."""
    bands: tuple[str, ...] | None = None
    """The band set's bands this catalog has columns for (None: all). The others are stored
    as missing, so a catalog with some of the bands takes the missing-band path."""

    def __post_init__(self) -> None:
        if self.units not in ("njy", "abmag"):
            raise IngestError(f"units must be 'njy' or 'abmag', not {self.units!r}")
        definition = self.definition()
        if self.bands is None:
            self.bands = definition.band_names
        self.bands = tuple(self.bands)
        outside = [b for b in self.bands if b not in definition.band_names]
        if outside:
            raise IngestError(
                f"bands {outside} are not in band set {definition.name!r} "
                f"{list(definition.band_names)}"
            )
        for template in (self.flux, self.flux_err):
            if "{band}" not in template:
                raise IngestError(f"column template {template!r} must contain '{{band}}'")

    def definition(self) -> BandSet:
        """The release's band set (:mod:`lor.bands`)."""
        try:
            return load_band_set(self.band_set)
        except ConfigError as exc:
            raise IngestError(str(exc)) from exc

    def flux_columns(self) -> list[str]:
        return [self.flux.format(band=b) for b in self.bands]

    def err_columns(self) -> list[str]:
        return [self.flux_err.format(band=b) for b in self.bands]


@dataclass
class IngestSummary:
    release: str
    path: str
    rows_read: int = 0
    rows_new: int = 0
    rows_changed: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0
    tract_scheme: str = "catalog"
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def ingest_catalog(
    engine: Engine,
    path: Path,
    release: str,
    columns: CatalogColumns | None = None,
    fmt: str | None = None,
    chunk_rows: int = 250_000,
    progress: bool = True,
    hdf5_path: str | None = None,
    bulk_min_rows: int | None = None,
) -> IngestSummary:
    """Ingest one catalog file into ``release``; see the module docstring.

    ``bulk_min_rows``: the smallest file loaded in bulk (:func:`_bulk_load`); None:
    :data:`BULK_MIN_ROWS`.
    """
    cols = columns or CatalogColumns()
    path = Path(path)
    with CatalogReader(path, fmt, hdf5_path) as reader:
        use_tract_column = bool(cols.tract) and cols.tract in reader.column_names
        wanted = [cols.id, cols.ra, cols.dec, *cols.flux_columns(), *cols.err_columns()]
        if use_tract_column:
            wanted.append(cols.tract)  # type: ignore[arg-type]
        if cols.ebv:
            wanted.append(cols.ebv)
        reader.require(wanted)
        summary = IngestSummary(
            release, str(path), tract_scheme="catalog" if use_tract_column else HEALPIX_SCHEME
        )
        options = {**asdict(cols), "format": reader.format, "tract_scheme": summary.tract_scheme}
        sha = file_sha256(path)
        with engine.begin() as conn:
            store.lock_ingestion(conn)
            store.check_tract_scheme(conn, summary.tract_scheme)  # before reading the file
            band_set_id = store.get_or_create_band_set(conn, cols.definition())
            release_id = store.get_or_create_release(conn, release, band_set_id)
            ingest_id = store.start_ingest(
                conn, release_id, str(path.resolve()), sha, options, code_version()
            )
            store.create_stage(conn)
            bulk = _bulk_load(
                conn, reader.n_rows, BULK_MIN_ROWS if bulk_min_rows is None else bulk_min_rows
            )
            stored_ids, rebuild = None, None
            if bulk:
                rebuild = store.drop_object_indexes(conn)  # holds the table from here on
                stored_ids = store.stored_catalog_ids(conn)  # fewer than the file's rows
            writer = _ObjectWriter(conn, release_id, len(cols.definition().bands), stored_ids)
            rejects: list[dict[str, Any]] = []
            seen_ids = _SeenIds()
            bar = tqdm(
                total=reader.n_rows, unit="rows", desc=f"ingest {path.name}", disable=not progress
            )
            for chunk in reader.chunks(wanted, chunk_rows):
                staged, chunk_rejects = prepare_chunk(chunk, cols, use_tract_column)
                staged, dup_rejects = seen_ids.drop_duplicates(staged)
                summary.rows_read += len(chunk)
                rejects += chunk_rejects + dup_rejects
                writer.submit(staged)
                bar.update(len(chunk))
            writer.close()
            bar.close()
            store.register_tracts(conn, writer.tracts(), summary.tract_scheme)
            new, summary.rows_changed, summary.rows_unchanged = store.merge_stage(
                conn, indexed=rebuild is None
            )
            if rebuild is not None:
                store.build_object_indexes(conn, rebuild)
            summary.rows_new = new + writer.direct_rows
            summary.rows_rejected = len(rejects)
            for r in rejects:
                summary.reject_reasons[r["reason"]] = summary.reject_reasons.get(r["reason"], 0) + 1
            store.insert_rejects(conn, ingest_id, rejects)
            counts = ("rows_read", "rows_new", "rows_changed", "rows_unchanged", "rows_rejected")
            store.finish_ingest(conn, ingest_id, {k: getattr(summary, k) for k in counts})
            _analyze_if_grown(conn, summary.rows_new + summary.rows_changed)
    return summary


BULK_MIN_ROWS = 100_000
"""Files smaller than this keep the table's indexes: building ``lor.objects``' indexes on all
its partitions has a fixed cost (about 0.05-0.1 s). Into an empty table, measured at load
1.1: 1,000 rows 0.07 s bulk / 0.035 s row by row, 20,000 rows 0.20 / 0.19 s, 100,000 rows
0.66 / 0.76 s; below 100,000 rows the gain is too small to hold the table exclusively."""


def _bulk_load(conn, n_rows: int | None, min_rows: int) -> bool:  # type: ignore[no-untyped-def]
    """Whether to load this file with ``lor.objects``' indexes dropped and build them after.

    Index maintenance row by row was two thirds of a first ingest (issue #17: a COPY of 1e6
    rows took 1.9 s into the bare table, 13.8 s with the three indexes, 5.8 s with the same
    indexes built after the COPY). A build sorts the whole table again, so it pays when the
    file holds more rows than the table: at least doubling it. It holds ``lor.objects``
    exclusively until commit (readers wait for the ingest; a table that small is being
    loaded, not served). Files of unknown length (CSV), and a session that may not rebuild
    the indexes (:func:`~lor.db.catalog_store.can_rebuild_object_indexes`), keep them.
    """
    if n_rows is None or n_rows < max(min_rows, 1):
        return False
    if store.objects_row_estimate(conn) >= n_rows:  # the planner's count: no scan
        return False
    return store.objects_fewer_than(conn, n_rows) and store.can_rebuild_object_indexes(conn)


ANALYZE_FRACTION = 0.1
"""An ingest that adds or changes more than this fraction of ``lor.objects`` ANALYZEs it."""


def _analyze_if_grown(conn, changed: int) -> None:  # type: ignore[no-untyped-def]
    """Fresh planner statistics of ``lor.objects`` when this ingest changed a good part of it
    (autovacuum's rule, applied before the first run claims instead of minutes later).

    Every claim joins ``lor.objects`` by (tract, object); without statistics of a freshly
    loaded catalog the planner probed the objects of a claimed item's whole tract and
    filtered the rest (issue #17: a 2,000-item calibration claim on 2,000-object tracts took
    11.6 s, 0.8 s after ``ANALYZE lor.objects``; it grows with the square of the tract).
    """
    if changed > ANALYZE_FRACTION * store.objects_row_estimate(conn):
        store.analyze_objects(conn)


def _photometry(chunk: Chunk, cols: CatalogColumns) -> Photometry:
    fcols, ecols = cols.flux_columns(), cols.err_columns()
    flux = np.stack([np.asarray(chunk.columns[c], dtype=np.float64) for c in fcols], axis=1)
    err = np.stack([np.asarray(chunk.columns[c], dtype=np.float64) for c in ecols], axis=1)
    if cols.units == "njy":
        flux *= np.array([flux_unit_scale(chunk.units.get(c), c) for c in fcols])
        err *= np.array([flux_unit_scale(chunk.units.get(c), c) for c in ecols])
    check_plausible_fluxes(flux, err, cols.units)
    names = list(cols.definition().band_names)
    if list(cols.bands) != names:  # bands the catalog lacks: NaN, i.e. missing
        at = [names.index(b) for b in cols.bands]  # type: ignore[union-attr]
        full_flux, full_err = (
            np.full((len(flux), len(names)), np.nan),
            np.full((len(flux), len(names)), np.nan),
        )
        full_flux[:, at], full_err[:, at] = flux, err
        flux, err = full_flux, full_err
    if cols.units == "njy":
        return photometry_from_fluxes(flux, err, names)
    return photometry_from_mags(flux, err, names)


def prepare_chunk(
    chunk: Chunk, cols: CatalogColumns, use_tract_column: bool
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """One chunk of catalog rows -> the staged ``lor.objects`` columns and the rejected rows
    (public so the ingest bench can time the staging alone)."""
    n = len(chunk)
    ids = chunk.columns[cols.id]
    if ids.dtype.kind not in "iu":
        raise IngestError(f"id column {cols.id!r} must hold integers, not {ids.dtype}")
    ids = ids.astype(np.int64)
    phot = _photometry(chunk, cols)
    reject = phot.reasons.add
    id_null = chunk.nulls.get(cols.id)
    if id_null is not None:
        reject(id_null, f"missing {cols.id}")
    ra = np.asarray(chunk.columns[cols.ra], dtype=np.float64)
    dec = np.asarray(chunk.columns[cols.dec], dtype=np.float64)
    reject(~np.isfinite(ra) | ~np.isfinite(dec), "non-finite position")
    reject((ra < 0) | (ra >= 360) | (np.abs(dec) > 90), "position outside 0<=ra<360, |dec|<=90")
    if use_tract_column:
        raw_tract = chunk.columns[cols.tract]  # type: ignore[index]
        tract_null = chunk.nulls.get(cols.tract)  # type: ignore[arg-type]
        bad_tract = (
            ~np.isfinite(raw_tract.astype(np.float64)) | (raw_tract < 0) | (raw_tract > 2**31 - 1)
        )
        if tract_null is not None:
            bad_tract |= tract_null
        reject(bad_tract, "invalid tract (missing, negative or not an integer)")
        tract = np.where(bad_tract, 0, raw_tract).astype(np.int64)
        reject(
            tract != np.where(bad_tract, 0, raw_tract),
            "invalid tract (missing, negative or not an integer)",
        )
        tract = tract.astype(np.int32)
    else:
        tract = np.zeros(n, np.int32)
        ok_pos = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
        tract[ok_pos] = healpix_tracts(ra[ok_pos], dec[ok_pos])
    ebv = np.full(n, np.nan, np.float32)
    if cols.ebv:
        ebv = np.asarray(chunk.columns[cols.ebv], dtype=np.float32)
        reject(np.isfinite(ebv) & ((ebv < 0) | (ebv > 10)), f"{cols.ebv} outside 0..10 mag")

    good = phot.reasons.usable
    rejects = [
        {
            "row_number": int(chunk.start_row + i),
            "catalog_id": None if (id_null is not None and id_null[i]) else int(ids[i]),
            "reason": phot.reasons.text(i),
            "raw": {name: _jsonable(chunk.columns[name][i]) for name in chunk.columns},
        }
        for i in np.flatnonzero(~good)
    ]
    keep = _rows(good)
    tract, ids, ra, dec, ebv = tract[keep], ids[keep], ra[keep], dec[keep], ebv[keep]
    flux, flux_err = phot.flux[keep], phot.flux_err[keep]
    missing_mask, nondetection_mask = phot.missing_mask[keep], phot.nondetection_mask[keep]
    content = as_words(tract, ra, dec, flux, flux_err, missing_mask, nondetection_mask, ebv)
    input_hash = hash128_uuid(content, seeds=(11, 12))
    staged = {
        "row_number": np.arange(chunk.start_row, chunk.start_row + n, dtype=np.int64)[keep],
        "tract_id": tract,
        "object_id": object_ids(ids, input_hash),
        "catalog_id": ids,
        "ra": ra,
        "dec": dec,
        "flux": flux,
        "flux_err": flux_err,
        "missing_mask": missing_mask,
        "nondetection_mask": nondetection_mask,
        "ebv": ebv,
        "input_hash": input_hash,
    }
    return staged, rejects


class _SeenIds:
    """Catalog ids already read from this file: a repeated id keeps its first row only."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, np.int64)
        self._rows = np.empty(0, np.int64)

    def drop_duplicates(
        self, staged: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        ids, rows = staged["catalog_id"], staged["row_number"]
        order = np.argsort(ids, kind="stable")
        repeat_in_chunk = np.zeros(len(ids), bool)
        repeat_in_chunk[order[1:]] = ids[order[1:]] == ids[order[:-1]]
        seen_before = np.zeros(len(ids), bool)
        if len(self._sorted):
            pos = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
            seen_before = self._sorted[pos] == ids
        dup = repeat_in_chunk | seen_before
        rejects = [
            {
                "row_number": int(rows[i]),
                "catalog_id": int(ids[i]),
                "reason": "duplicate id in file",
                "raw": {},
            }
            for i in np.flatnonzero(dup)
        ]
        keep = ~dup
        merged = np.concatenate([self._sorted, ids[keep]])
        self._sorted = np.sort(merged)
        return ({k: v[keep] for k, v in staged.items()} if dup.any() else staged), rejects


class _ObjectWriter:
    """Writes prepared chunks from a background thread while the next chunk is prepared.

    Fast path: if no stored object has a catalog id in the chunk's id range, every row is new
    and is COPYed straight into ``lor.objects``; otherwise rows go to the staging table for the
    final merge. Ingests hold an advisory lock, so the range check cannot race another ingest.
    A bulk load passes ``stored_ids`` (the sorted catalog ids already stored; its table has
    no index to check with): each row whose id is not among them goes straight in, the others
    to the staging table.
    """

    def __init__(  # type: ignore[no-untyped-def]
        self, conn, release_id: int, n_bands: int, stored_ids: np.ndarray | None = None
    ) -> None:
        self._conn, self._release_id, self._n_bands = conn, release_id, n_bands
        self._stored_ids = stored_ids
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lor-copy")
        self._pending: Future[None] | None = None
        self._tracts: set[int] = set()
        self.direct_rows = 0

    def submit(self, staged: dict[str, np.ndarray]) -> None:
        """Encode the chunk here (while the previous one is COPYed), then hand it over.

        Encoding in the writer thread made it the slower half of the pipeline (encode + COPY
        against the next chunk's preparation).
        """
        ids = staged["catalog_id"]
        if not len(ids):
            groups: list[_Group] = []
        elif self._stored_ids is None:  # the table is decided by the id-range check
            groups = [_Group(None, self._encode(staged), len(ids))]
        else:
            stored = np.zeros(len(ids), bool)
            if len(self._stored_ids):
                at = np.minimum(np.searchsorted(self._stored_ids, ids), len(self._stored_ids) - 1)
                stored = self._stored_ids[at] == ids
            groups = [
                _Group(table, self._encode({k: v[_rows(rows)] for k, v in staged.items()}), n)
                for table, rows in (("lor.objects", ~stored), (store.STAGE_TABLE, stored))
                if (n := int(rows.sum()))
            ]
        if self._pending is not None:
            self._pending.result()  # one chunk in flight at a time; re-raises COPY errors
        if len(ids):
            self._tracts.update(np.unique(staged["tract_id"]).tolist())
            id_range = (int(ids.min()), int(ids.max()))
            self._pending = self._pool.submit(self._write, id_range, groups)

    def _encode(self, staged: dict[str, np.ndarray]) -> list[tuple[memoryview, list[Field]]]:
        """Binary COPY payloads of a chunk: rows with E(B-V), rows without (NULL by omission)."""
        n = len(staged["catalog_id"])
        staged = {**staged, "release_id": np.full(n, self._release_id, np.int32)}
        has_ebv = np.isfinite(staged["ebv"])
        payloads = []
        for with_ebv in (True, False):
            rows = has_ebv if with_ebv else ~has_ebv
            if rows.any():
                fields = store.object_fields(self._n_bands, with_ebv)
                part = {f.name: staged[f.name][_rows(rows)] for f in fields}
                payloads.append((encode_rows(fields, part), fields))
        return payloads

    def _write(self, id_range: tuple[int, int], groups: list[_Group]) -> None:
        for group in groups:
            table = group.table
            if table is None:
                stored = store.any_object_in_id_range(self._conn, *id_range)
                table = store.STAGE_TABLE if stored else "lor.objects"
            for payload, fields in group.payloads:
                store.copy_rows(self._conn, table, payload, fields)
            if table == "lor.objects":
                self.direct_rows += group.rows

    def close(self) -> None:
        try:
            if self._pending is not None:
                self._pending.result()
        finally:
            self._pool.shutdown()

    def tracts(self) -> list[int]:
        return sorted(self._tracts)


@dataclass
class _Group:
    """Encoded rows of a chunk bound for one table (None: the id-range check decides)."""

    table: str | None
    payloads: list[tuple[memoryview, list[Field]]]
    rows: int


def _rows(mask: np.ndarray) -> np.ndarray | slice:
    """``mask`` as an index; every row (the common case) as a slice, so indexing gives views
    instead of copying each column of the chunk."""
    return slice(None) if mask.all() else mask


def _jsonable(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
