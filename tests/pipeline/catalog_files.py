"""Write one catalog table in every supported file format (test helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa


def write_catalog(table: pa.Table, path: Path) -> Path:
    """Write ``table`` in the format named by ``path``'s suffix."""
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif name.endswith(".csv"):
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    elif name.endswith(".fits"):
        from astropy.table import Table

        Table({c: table[c].to_numpy() for c in table.column_names}).write(path, format="fits")
    elif name.endswith(".h5"):
        from astropy.table import Table

        Table({c: table[c].to_numpy() for c in table.column_names}).write(
            path, path="objects", format="hdf5", serialize_meta=False
        )
    elif name.endswith(".hdf5"):  # a group of 1-D column datasets
        import h5py

        with h5py.File(path, "w") as fh:
            for c in table.column_names:
                fh.create_dataset(c, data=np.asarray(table[c].to_numpy()))
    else:
        raise ValueError(name)
    return path
