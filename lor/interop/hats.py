"""``lor export RUN --format hats``: a run's posteriors as a HATS catalog (read with LSDB).

HATS is Parquet tiled by HEALPix, what Rubin serves its catalogs in. The run is first
written with lor's own Parquet export (every column: ids, positions, summaries, flags,
provenance and the posterior parameters), then partitioned by the ``hats-import`` pipeline
on an in-process Dask client, so the tiling, ``_healpix_29`` index, skymap and metadata are
hats-import's own. The run's provenance (model, prior and calibration versions, code
version) goes into the catalog's ``hats.properties`` as ``lor_*`` keys.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import Engine

from lor.errors import LorError

#: Most rows in one HATS partition (hats-import's ``pixel_threshold``).
DEFAULT_PIXEL_THRESHOLD = 500_000


class HatsExportError(LorError):
    """A HATS export that cannot run (packages missing, bad output path)."""


def provenance_properties(run: dict, lor_version: str) -> dict[str, str]:
    """``hats.properties`` keys that say where the catalog's rows came from."""
    return {
        "lor_run_id": str(run["id"]),
        "lor_run_name": str(run["name"]),
        "lor_run": json.dumps(run, default=str, sort_keys=True),
        "lor_version": lor_version,
        "lor_source": "lor.run_posteriors (latest posterior of every object of the run)",
        "obs_title": f"lor posteriors of run {run['name']}",
    }


def export_hats(
    engine: Engine,
    run: int | str,
    out: Path,
    chunk_rows: int = 10_000,
    progress: bool = True,
    pixel_threshold: int = DEFAULT_PIXEL_THRESHOLD,
) -> dict:
    """Write the HATS catalog ``out`` (a folder); returns the flat export's summary."""
    try:
        from dask.distributed import Client
        from hats_import.catalog.arguments import ImportArguments
        from hats_import.pipeline import pipeline_with_client
    except ImportError as exc:  # pragma: no cover - the interop extra is not installed
        raise HatsExportError(
            f"HATS export needs hats-import: pip install 'lor[interop]' ({exc})"
        ) from exc
    from lor.reporting.export import export_run
    from lor.runs.lifecycle import get_run, run_as_dict
    from lor.version import code_version

    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise HatsExportError(f"a HATS catalog is a folder; {out} is a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    found = get_run(engine, run)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        flat = Path(tmp) / "run.parquet"
        summary = export_run(engine, found.id, flat, "parquet", chunk_rows, progress=progress)
        staged = Path(tmp) / out.name  # hats-import names the catalog after its folder
        args = ImportArguments(
            output_path=str(staged.parent),
            output_artifact_name=staged.name,
            input_file_list=[str(flat)],
            file_reader="parquet",
            ra_column="ra",
            dec_column="dec",
            sort_columns="catalog_id",
            pixel_threshold=pixel_threshold,
            tmp_dir=str(Path(tmp) / "work"),
            resume=False,
            progress_bar=progress,
            simple_progress_bar=True,
            expected_total_rows=summary.objects,
            addl_hats_properties=provenance_properties(run_as_dict(found), code_version()),
        )
        with Client(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
        ) as client:
            pipeline_with_client(args, client)
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    return summary.as_dict() | {"format": "hats", "path": str(out)}
