"""Band sets: the one definition of a survey's bands, read from one YAML file each.

A band set names its bands (short names: catalog column stems, array order everywhere), their
filter curves (speclite names, or ``.ecsv`` files next to the config), per-band 5-sigma
depths and error model (Ivezić et al. 2019, Eq. 5, with each band's ``gamma``), and the
reference band the population prior selects on. The shipped ones live in
``lor/data/band_sets/<name>.yaml``; adding a band set is adding a file there (or passing a
path). The same record is stored in ``lor.band_sets`` and in every trained artifact's spec
(``band_set``), so ingest, the SPS model, emulators, estimators and the data model all read
the same bands in the same order, and a run can check its models against its release.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from lor.errors import ConfigError, UnknownBandError

BAND_SET_DIR = Path(__file__).resolve().parent / "data" / "band_sets"
DEFAULT_BAND_SET = "lsst"
"""The band set of every model shipped before issue #13, and of catalogs that name none."""
MAX_BANDS = 16
"""Bands a set may hold: the per-object missing/non-detection masks are ``int2`` bit masks."""


@dataclass(frozen=True)
class Band:
    """One band: short name, filter curve, depth and error-model parameter."""

    name: str
    filter: str
    m5: float
    """5-sigma point-source depth (AB mag) after ``m5_years`` of survey."""
    gamma: float
    """Ivezić et al. (2019) Eq. 5 parameter (0.04: background-limited errors)."""
    m5_years: float | None
    """Survey years at which ``m5`` holds (depth grows as 1.25 log10 of time, their Eq. 6);
    None: a fixed depth that does not follow the survey years (another survey's final one)."""


@dataclass(frozen=True)
class BandSet:
    """An ordered set of bands; see the module docstring."""

    name: str
    bands: tuple[Band, ...]
    reference_band: str
    description: str = ""
    citations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [b.name for b in self.bands]
        if not names:
            raise ConfigError(f"band set {self.name!r} has no bands")
        if len(names) > MAX_BANDS:
            raise ConfigError(
                f"band set {self.name!r} has {len(names)} bands; the per-object band masks "
                f"hold {MAX_BANDS}"
            )
        folded = [n.lower() for n in names]
        if len(set(folded)) != len(folded):
            raise ConfigError(
                f"band set {self.name!r} repeats a band name (case-blind): {names}; catalog "
                "columns are often case-insensitive"
            )
        if self.reference_band not in names:
            raise ConfigError(
                f"band set {self.name!r}: reference band {self.reference_band!r} not in {names}"
            )
        for b in self.bands:
            if not 0.0 < b.gamma <= 0.04:
                raise ConfigError(f"band {b.name}: gamma must lie in (0, 0.04], not {b.gamma}")
            if b.m5_years is not None and b.m5_years <= 0:
                raise ConfigError(f"band {b.name}: m5_years must be positive")

    # -- views --------------------------------------------------------------------------
    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @property
    def filter_names(self) -> tuple[str, ...]:
        return tuple(b.filter for b in self.bands)

    @property
    def aliases(self) -> dict[str, str]:
        """Short name -> filter name."""
        return {b.name: b.filter for b in self.bands}

    @property
    def m5(self) -> dict[str, float]:
        return {b.name: b.m5 for b in self.bands}

    @property
    def gamma(self) -> dict[str, float]:
        return {b.name: b.gamma for b in self.bands}

    @property
    def m5_years(self) -> dict[str, float | None]:
        return {b.name: b.m5_years for b in self.bands}

    def index(self, names: Sequence[str]) -> list[int]:
        """Positions of ``names`` in this set; unknown names raise with the known ones."""
        unknown = [n for n in names if n not in self.band_names]
        if unknown:
            raise UnknownBandError(
                f"bands {unknown} are not in band set {self.name!r}: {list(self.band_names)}"
            )
        return [self.band_names.index(n) for n in names]

    # -- records ------------------------------------------------------------------------
    def as_record(self) -> dict[str, Any]:
        """JSON record: what ``lor.band_sets.definition`` and artifact specs store."""
        return {
            "name": self.name,
            "description": self.description,
            "reference_band": self.reference_band,
            "bands": [
                {
                    "name": b.name,
                    "filter": b.filter,
                    "m5": b.m5,
                    "gamma": b.gamma,
                    "m5_years": b.m5_years,
                }
                for b in self.bands
            ],  # fmt: skip
            "citations": list(self.citations),
        }

    @property
    def sha256(self) -> str:
        """Content hash of the record (names, curves, depths, error model)."""
        return hashlib.sha256(json.dumps(self.as_record(), sort_keys=True).encode()).hexdigest()

    def same_bands(self, other: BandSet) -> bool:
        """Same band names and filter curves in the same order (depths may differ)."""
        return self.band_names == other.band_names and self.filter_names == other.filter_names

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BandSet:
        try:
            bands = tuple(
                Band(
                    name=str(b["name"]),
                    filter=str(b["filter"]),
                    m5=float(b["m5"]),
                    gamma=float(b["gamma"]),
                    m5_years=None if b.get("m5_years") is None else float(b["m5_years"]),
                )
                for b in record["bands"]
            )
            return cls(
                name=str(record["name"]),
                bands=bands,
                reference_band=str(record["reference_band"]),
                description=str(record.get("description", "")),
                citations=tuple(str(c) for c in record.get("citations", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed band set record: {exc!r}") from exc


def _read(path: Path) -> BandSet:
    try:
        record = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"band set file {path} is not YAML: {exc}") from exc
    if not isinstance(record, dict):
        raise ConfigError(f"band set file {path} must hold a mapping")
    band_set = BandSet.from_record(record)
    if path.parent == BAND_SET_DIR and band_set.name != path.stem:
        raise ConfigError(
            f"{path} defines band set {band_set.name!r}; name it {band_set.name}.yaml"
        )
    # Filter files are given relative to the config that names them.
    bands = tuple(
        Band(b.name, str(path.parent / b.filter), b.m5, b.gamma, b.m5_years)
        if b.filter.endswith(".ecsv")
        else b
        for b in band_set.bands
    )
    return BandSet(
        band_set.name, bands, band_set.reference_band, band_set.description, band_set.citations
    )


def shipped_band_set_names() -> list[str]:
    """Names of the band sets shipped in ``lor/data/band_sets``, sorted."""
    return sorted(p.stem for p in BAND_SET_DIR.glob("*.yaml"))


@lru_cache(maxsize=32)
def load_band_set(name_or_path: str = DEFAULT_BAND_SET) -> BandSet:
    """A shipped band set by name, or one defined by a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _read(path)
    shipped = BAND_SET_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ConfigError(
            f"unknown band set {name_or_path!r}; shipped: {shipped_band_set_names()} (or give "
            "the path of a band-set YAML file)"
        )
    return _read(shipped)


def shipped_band_sets() -> list[BandSet]:
    return [load_band_set(n) for n in shipped_band_set_names()]


def shipped_aliases() -> dict[str, str]:
    """Short band name -> filter name over every shipped band set.

    One short name means one curve in every set that uses it (checked by the band-set
    contract test), so a bare ``i`` or ``H_E`` resolves the same everywhere.
    """
    out: dict[str, str] = {}
    for band_set in shipped_band_sets():
        out |= band_set.aliases
    return out


LSST_BANDS: tuple[str, ...] = load_band_set(DEFAULT_BAND_SET).band_names
"""Rubin LSST ugrizy short names, the one definition (``lor/data/band_sets/lsst.yaml``)."""


def band_set_of(spec: dict[str, Any]) -> BandSet:
    """The band set an artifact spec was trained on.

    Specs written since issue #13 carry the record (``band_set``); older ones only their band
    names, which are matched against the shipped sets (the LSST ugrizy models are ``lsst``).
    """
    record = spec.get("band_set")
    if record is not None:
        return BandSet.from_record(record)
    names = tuple(spec["band_names"])
    for band_set in shipped_band_sets():
        if band_set.band_names == names:
            return band_set
    raise ConfigError(
        f"artifact {spec.get('name')!r} names no band set and its bands {list(names)} match "
        f"no shipped one ({shipped_band_set_names()})"
    )


def band_set_for_bands(bands: Sequence[str]) -> BandSet:
    """The shipped band set with exactly these band names in this order."""
    for band_set in shipped_band_sets():
        if band_set.band_names == tuple(bands):
            return band_set
    raise ConfigError(
        f"no shipped band set has bands {list(bands)}; shipped: "
        + ", ".join(f"{b.name} {list(b.band_names)}" for b in shipped_band_sets())
        + ". Give --band-set (a name or a YAML file)."
    )
