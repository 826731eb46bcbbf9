"""Streaming readers for catalog files: Parquet, FITS, HDF5 and CSV.

Each reader yields :class:`Chunk` objects holding only the requested columns as numpy arrays,
so a catalog of any size streams through ingestion in bounded memory. Integer columns stay
int64 end to end (Rubin objectIds exceed 2**53 and must never pass through float64); nulls are
reported in a separate mask instead of being coerced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lor.errors import IngestError

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".csv": "csv",
    ".csv.gz": "csv",
}


@dataclass
class Chunk:
    """A contiguous block of catalog rows: ``columns[name]`` and ``nulls[name]`` (bool or None)."""

    start_row: int
    columns: dict[str, np.ndarray]
    nulls: dict[str, np.ndarray | None] = field(default_factory=dict)
    units: dict[str, str | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


def detect_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise IngestError(
        f"cannot tell the format of {path.name}: use one of {sorted(set(FORMATS.values()))} "
        f"(extensions {sorted(FORMATS)}) or pass --format"
    )


class CatalogReader:
    """Opens a catalog once, checks its columns, then streams chunks of the wanted columns."""

    def __init__(self, path: Path, fmt: str | None = None, hdf5_path: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise IngestError(f"catalog file not found: {self.path}")
        self.format = fmt or detect_format(self.path)
        if self.format not in set(FORMATS.values()):
            raise IngestError(f"unknown format {self.format!r}")
        self._hdf5_path = hdf5_path
        try:
            self._open()
        except IngestError:
            raise
        except Exception as exc:  # every library has its own exception zoo for bad files
            raise IngestError(
                f"{self.path.name} is not a readable {self.format} file: {exc}"
            ) from exc

    # -- opening ---------------------------------------------------------------------------
    def _open(self) -> None:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._pq = pq.ParquetFile(self.path)
            self.column_names = list(self._pq.schema_arrow.names)
            self.n_rows: int | None = self._pq.metadata.num_rows
        elif self.format == "csv":
            import pyarrow.csv as pacsv

            reader = pacsv.open_csv(self.path)
            self.column_names = list(reader.schema.names)
            self.n_rows = None
        elif self.format == "fits":
            from astropy.io import fits

            self._hdul = fits.open(self.path, memmap=True)
            tables = [h for h in self._hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)]
            if not tables:
                raise IngestError(f"{self.path.name} has no FITS table extension")
            self._fits = tables[0]
            self.column_names = list(self._fits.columns.names)
            self.n_rows = int(self._fits.header["NAXIS2"])
        else:
            import h5py

            self._h5 = h5py.File(self.path, "r")
            self._h5_node = self._find_hdf5_table()
            if isinstance(self._h5_node, h5py.Dataset):
                self.column_names = list(self._h5_node.dtype.names or [])
                self.n_rows = int(self._h5_node.shape[0])
            else:
                cols = [k for k, v in self._h5_node.items() if isinstance(v, h5py.Dataset)]
                self.column_names = cols
                lengths = {self._h5_node[c].shape[0] for c in cols}
                if len(lengths) != 1:
                    raise IngestError(f"HDF5 group columns have different lengths: {lengths}")
                self.n_rows = lengths.pop()

    def _find_hdf5_table(self):  # type: ignore[no-untyped-def]
        import h5py

        if self._hdf5_path:
            if self._hdf5_path not in self._h5:
                raise IngestError(f"{self.path.name} has no HDF5 node {self._hdf5_path!r}")
            return self._h5[self._hdf5_path]
        compound = []
        self._h5.visititems(
            lambda name, obj: (
                compound.append(obj) if isinstance(obj, h5py.Dataset) and obj.dtype.names else None
            )
        )
        if len(compound) == 1:
            return compound[0]
        if len(compound) > 1:
            names = [d.name for d in compound]
            raise IngestError(f"{self.path.name} has several tables {names}: pass --hdf5-path")
        return self._h5  # a group of 1-D column datasets at the root

    def close(self) -> None:
        for attr in ("_hdul", "_h5"):
            handle = getattr(self, attr, None)
            if handle is not None:
                handle.close()

    def __enter__(self) -> CatalogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------
    def require(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self.column_names]
        if missing:
            raise IngestError(
                f"{self.path.name} lacks column(s) {missing}; it has {self.column_names[:40]}"
                + (" ..." if len(self.column_names) > 40 else "")
                + ". Use the column-template options for other catalogs."
            )

    def chunks(self, names: Sequence[str], chunk_rows: int) -> Iterator[Chunk]:
        """Yield chunks of the named columns; read errors become :class:`IngestError`."""
        self.require(names)
        try:
            yield from getattr(self, f"_chunks_{self.format}")(list(names), chunk_rows)
        except IngestError:
            raise
        except Exception as exc:
            raise IngestError(f"reading {self.path.name} failed: {exc}") from exc

    def _chunks_parquet(self, names: list[str], chunk_rows: int) -> Iterator[Chunk]:
        start = 0
        units = _arrow_units(self._pq.schema_arrow, names)
        for batch in self._pq.iter_batches(batch_size=chunk_rows, columns=names):
            yield _arrow_chunk(batch, names, start, units)
            start += batch.num_rows

    def _chunks_csv(self, names: list[str], chunk_rows: int) -> Iterator[Chunk]:
        import pyarrow.csv as pacsv

        opts = pacsv.ConvertOptions(include_columns=names)
        read = pacsv.ReadOptions(block_size=max(1 << 20, chunk_rows * 200))
        start = 0
        for batch in pacsv.open_csv(self.path, read_options=read, convert_options=opts):
            yield _arrow_chunk(batch, names, start, {})
            start += batch.num_rows

    def _chunks_fits(self, names: list[str], chunk_rows: int) -> Iterator[Chunk]:
        data = self._fits.data
        units = {n: self._fits.columns[n].unit for n in names}
        for start in range(0, self.n_rows or 0, chunk_rows):
            block = data[start : start + chunk_rows]
            cols = {n: _native(np.asarray(block[n])) for n in names}
            yield Chunk(start, cols, {n: None for n in names}, units)

    def _chunks_hdf5(self, names: list[str], chunk_rows: int) -> Iterator[Chunk]:
        node = self._h5_node
        for start in range(0, self.n_rows or 0, chunk_rows):
            stop = start + chunk_rows
            if hasattr(node, "dtype") and node.dtype.names:
                block = node[start:stop]
                cols = {n: _native(np.asarray(block[n])) for n in names}
                units = {n: _h5_unit(node, n) for n in names}
            else:
                cols = {n: _native(np.asarray(node[n][start:stop])) for n in names}
                units = {n: _h5_unit(node[n], None) for n in names}
            yield Chunk(start, cols, {n: None for n in names}, units)


def _native(arr: np.ndarray) -> np.ndarray:
    """FITS data is big-endian; make it native so numpy math and hashing are uniform."""
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _h5_unit(node, column: str | None) -> str | None:  # type: ignore[no-untyped-def]
    key = f"{column}_unit" if column else "unit"
    value = node.attrs.get(key)
    return value.decode() if isinstance(value, bytes) else value


def _arrow_units(schema, names: list[str]) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    units: dict[str, str | None] = {}
    for name in names:
        meta = schema.field(name).metadata or {}
        unit = meta.get(b"unit")
        units[name] = unit.decode() if unit else None
    return units


def _arrow_chunk(batch, names: list[str], start: int, units: dict[str, str | None]) -> Chunk:  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.compute as pc

    cols: dict[str, np.ndarray] = {}
    nulls: dict[str, np.ndarray | None] = {}
    for name in names:
        col = batch.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            if pa.types.is_null(col.type):  # an all-empty CSV column
                col = pa.array(np.full(len(col), np.nan))
            else:
                raise IngestError(f"column {name!r} is {col.type}, expected numbers")
        null_mask = None
        if col.null_count:
            null_mask = np.asarray(col.is_null())
            fill = 0 if pa.types.is_integer(col.type) else float("nan")
            col = pc.fill_null(col, fill)
        cols[name] = np.asarray(col)
        nulls[name] = null_mask
    return Chunk(start, cols, nulls, units)
