"""The lor schema as SQLAlchemy 2.0 typed ORM classes (PostgreSQL schema ``lor``).

The three big tables (``objects``, ``work_items``, ``posteriors``) carry ``tract_id`` as the
first column of every key and are hash-partitioned on it; that is also the column Citus
distributes on, so the same schema scales out without key changes. Every column has a comment
(``\\d+ lor.objects`` in psql shows them).

State columns use text with CHECK constraints rather than PostgreSQL enums so migrations can
add a state without ``ALTER TYPE`` gymnastics.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    REAL,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Values of ``posteriors.method``, how a posterior was made; the staging table of
#: :mod:`lor.db.queue_store` carries the index into this tuple, so append, never reorder.
METHODS: tuple[str, ...] = ("none", "amortized", "mcmc", "reweighted")

SCHEMA = "lor"
#: Number of hash partitions of the big tables (a power of two; Citus shards the same key).
N_PARTITIONS = 16
PARTITIONED_TABLES = ("objects", "work_items", "posteriors")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)


def _now() -> Any:
    return mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        nullable=False,
        comment="When this row was written (server clock, UTC).",
    )


class BandSet(Base):
    __tablename__ = "band_sets"
    __table_args__ = {
        "comment": "Ordered photometric band sets; arrays of fluxes follow this order."
    }

    id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="Band set id.")
    name: Mapped[str] = mapped_column(
        Text, unique=True, comment="Band set name, e.g. lsst or lsst-euclid."
    )
    bands: Mapped[list[str]] = mapped_column(
        ARRAY(Text), comment="Short band names in array order, e.g. {u,g,r,i,z,y}."
    )
    filters: Mapped[list[str]] = mapped_column(
        ARRAY(Text), comment="speclite filter names in array order, e.g. {lsst2023-u,...}."
    )
    reference_band: Mapped[str | None] = mapped_column(
        Text, comment="Band the survey selection and the population prior refer to, e.g. i."
    )
    definition: Mapped[dict[str, Any] | None] = mapped_column(
        JSONB,
        comment="The band set's record (lor.bands.BandSet.as_record): bands, filter curves, "
        "5-sigma depths, error model, reference band, citations. NULL: an ad-hoc set from "
        "before migration 0011.",
    )
    definition_sha256: Mapped[str | None] = mapped_column(
        Text, comment="sha256 of the definition; artifacts carry the same record in their spec."
    )
    created_at: Mapped[datetime] = _now()


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = {
        "comment": "Data releases; objects are versioned by the release that introduced them."
    }

    id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="Release id.")
    name: Mapped[str] = mapped_column(Text, unique=True, comment="Release name, e.g. DP1 or DR1.")
    sequence: Mapped[int] = mapped_column(
        Integer, unique=True, comment="Order of releases; a later release supersedes earlier ones."
    )
    band_set_id: Mapped[int] = mapped_column(
        ForeignKey("band_sets.id"), comment="Band set of every object in this release."
    )
    created_at: Mapped[datetime] = _now()


class Tract(Base):
    __tablename__ = "tracts"
    __table_args__ = {"comment": "Sky tracts: the unit of calibration and of data distribution."}

    id: Mapped[int] = mapped_column(
        Integer, primary_key=True, autoincrement=False, comment="Tract number in its scheme."
    )
    scheme: Mapped[str] = mapped_column(
        Text,
        comment="Tract scheme: 'catalog' (tract ids given by the catalog, e.g. the Rubin "
        "skymap) or 'healpix-nest-32' (lor assigns the HEALPix nested nside=32 pixel).",
    )
    created_at: Mapped[datetime] = _now()


class Ingest(Base):
    __tablename__ = "ingests"
    __table_args__ = {"comment": "One row per ingested file: what was read and what was stored."}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="Ingest id.")
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), comment="Target release.")
    source_path: Mapped[str] = mapped_column(Text, comment="Path of the ingested file.")
    source_sha256: Mapped[str] = mapped_column(Text, comment="sha256 of the file's bytes.")
    options: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="Column templates, units and tract scheme used to read the file."
    )
    rows_read: Mapped[int] = mapped_column(BigInteger, comment="Rows in the file.")
    rows_new: Mapped[int] = mapped_column(BigInteger, comment="Objects stored for the first time.")
    rows_changed: Mapped[int] = mapped_column(
        BigInteger, comment="Objects whose measurements changed: a new object version was stored."
    )
    rows_unchanged: Mapped[int] = mapped_column(
        BigInteger, comment="Objects already stored with identical measurements (not stored again)."
    )
    rows_rejected: Mapped[int] = mapped_column(
        BigInteger, comment="Rows with unusable values, written to ingest_rejects."
    )
    lor_version: Mapped[str] = mapped_column(Text, comment="lor code version that ingested.")
    created_at: Mapped[datetime] = _now()


class IngestReject(Base):
    __tablename__ = "ingest_rejects"
    __table_args__ = {"comment": "Catalog rows that could not be used, with the reason."}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, comment="Reject id.")
    ingest_id: Mapped[int] = mapped_column(
        ForeignKey("ingests.id", ondelete="CASCADE"),
        index=True,
        comment="Ingest that read the row.",
    )
    row_number: Mapped[int] = mapped_column(BigInteger, comment="0-based row number in the file.")
    catalog_id: Mapped[int | None] = mapped_column(
        BigInteger, nullable=True, comment="Catalog object id, if it was readable."
    )
    reason: Mapped[str] = mapped_column(Text, comment="Why the row was rejected.")
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB, comment="The row's raw values.")


class Object(Base):
    __tablename__ = "objects"
    __table_args__ = (
        Index("ix_objects_catalog_id", "catalog_id"),
        {
            "postgresql_partition_by": "HASH (tract_id)",
            "comment": "Object versions: one row per distinct set of measurements of a catalog "
            "object. Fluxes are nJy in band-set order; bit b of a mask refers to band b.",
        },
    )

    tract_id: Mapped[int] = mapped_column(
        Integer, primary_key=True, comment="Tract (partition and distribution key)."
    )
    object_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        primary_key=True,
        comment="Deterministic version key: catalog id (8 bytes, order-preserving) then 8 bytes "
        "of input_hash; re-ingest of identical rows is idempotent.",
    )
    catalog_id: Mapped[int] = mapped_column(BigInteger, comment="Catalog's object id (objectId).")
    release_id: Mapped[int] = mapped_column(
        Integer,
        comment="Release that introduced this object version (a lor.releases id; no foreign key).",
    )
    superseded_release_id: Mapped[int | None] = mapped_column(
        Integer,
        nullable=True,
        comment="Release that replaced this version with changed measurements; NULL if current.",
    )
    ra: Mapped[float] = mapped_column(Double, comment="Right ascension, ICRS, degrees.")
    dec: Mapped[float] = mapped_column(Double, comment="Declination, ICRS, degrees.")
    flux: Mapped[list[float]] = mapped_column(
        ARRAY(REAL),
        comment="Fluxes in nJy, band-set order. NaN where missing; 0 for a non-detection "
        "reported as a limit.",
    )
    flux_err: Mapped[list[float]] = mapped_column(
        ARRAY(REAL),
        comment="1-sigma flux errors in nJy, band-set order. NaN where missing; the 1-sigma "
        "limit for a non-detection.",
    )
    missing_mask: Mapped[int] = mapped_column(
        SmallInteger, comment="Bit b set: band b has no usable measurement (NaN or sentinel)."
    )
    nondetection_mask: Mapped[int] = mapped_column(
        SmallInteger,
        comment="Bit b set: band b is a non-detection given as an upper limit (flux 0, err = limit).",
    )
    ebv: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Galactic E(B-V), mag, if the catalog carries it."
    )
    input_hash: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        comment="128-bit hash of the stored measurements (tract, position, fluxes, errors, "
        "masks, E(B-V)); equal hashes mean unchanged.",
    )


class CalibrationVersion(Base):
    __tablename__ = "calibration_versions"
    __table_args__ = {
        "comment": "Versions of the data model: per-tract zeropoints and noise scales."
    }

    id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="Calibration version id.")
    name: Mapped[str] = mapped_column(Text, unique=True, comment="Human-readable version name.")
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("calibration_versions.id"), nullable=True, comment="Version this one refines."
    )
    method: Mapped[str] = mapped_column(
        Text, comment="How it was made: identity, calibrate, manual."
    )
    provenance: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="Data it was fitted on, settings, fit diagnostics, code version."
    )
    created_at: Mapped[datetime] = _now()


class CalibrationTerm(Base):
    __tablename__ = "calibration_terms"
    __table_args__ = {"comment": "Per-tract, per-band zeropoint offset and noise scaling."}

    calibration_version_id: Mapped[int] = mapped_column(
        ForeignKey("calibration_versions.id", ondelete="CASCADE"),
        primary_key=True,
        comment="Calibration version.",
    )
    tract_id: Mapped[int] = mapped_column(
        ForeignKey("tracts.id"), primary_key=True, comment="Tract."
    )
    band: Mapped[str] = mapped_column(Text, primary_key=True, comment="Short band name.")
    zeropoint_offset_mag: Mapped[float] = mapped_column(
        REAL, comment="Additive magnitude offset: m_true = m_catalog + offset."
    )
    zeropoint_offset_err: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="1-sigma uncertainty of the offset, mag."
    )
    noise_scale: Mapped[float] = mapped_column(
        REAL, comment="Multiplier on reported flux errors (1 = errors are right)."
    )
    noise_scale_err: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="1-sigma uncertainty of the noise scale."
    )


class CalibrationSurveyTerm(Base):
    __tablename__ = "calibration_survey_terms"
    __table_args__ = {
        "comment": "Survey-wide, per-band model error of a calibration version: SED offset "
        "and error floor."
    }

    calibration_version_id: Mapped[int] = mapped_column(
        ForeignKey("calibration_versions.id", ondelete="CASCADE"),
        primary_key=True,
        comment="Calibration version.",
    )
    band: Mapped[str] = mapped_column(Text, primary_key=True, comment="Short band name.")
    sed_offset_mag: Mapped[float] = mapped_column(
        REAL, comment="Offset common to every tract (SED-model error), mag."
    )
    sed_offset_err: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="1-sigma uncertainty, mag."
    )
    error_floor_mag: Mapped[float] = mapped_column(
        REAL, comment="Fractional model-error floor (mag) added in quadrature to flux errors."
    )
    error_floor_err: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="1-sigma uncertainty, mag."
    )


class PriorVersion(Base):
    __tablename__ = "prior_versions"
    __table_args__ = {"comment": "Versions of the population prior and its hyperparameters."}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="Prior version id.")
    name: Mapped[str] = mapped_column(Text, unique=True, comment="Human-readable version name.")
    family: Mapped[str] = mapped_column(Text, comment="Prior family name in lor's registry.")
    family_version: Mapped[str] = mapped_column(Text, comment="Version of the prior family code.")
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="Named hyperparameter values (and uncertainties when fitted)."
    )
    selection: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="Survey selection the prior includes, e.g. {'band': 'i', 'mag_max': 25.3}."
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("prior_versions.id"), nullable=True, comment="Version this one refines."
    )
    method: Mapped[str] = mapped_column(
        Text, comment="How it was made: interim, calibrate, manual."
    )
    provenance: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="Data it was fitted on, settings, diagnostics, code version."
    )
    created_at: Mapped[datetime] = _now()


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("kind", "artifact_sha256"),
        CheckConstraint("kind IN ('emulator', 'estimator')", name="kind"),
        CheckConstraint("artifact_sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        {"comment": "Trained model artifacts, pinned by content hash."},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="Model version id.")
    kind: Mapped[str] = mapped_column(Text, comment="emulator or estimator.")
    family_name: Mapped[str] = mapped_column(Text, comment="Code family in lor's registry.")
    family_version: Mapped[str] = mapped_column(Text, comment="Version of that family's code.")
    artifact_sha256: Mapped[str] = mapped_column(
        Text, comment="sha256 of the artifact; verified before every load."
    )
    artifact_uri: Mapped[str] = mapped_column(
        Text,
        comment="Content address sha256:<hex> of the artifact in the model store "
        "(LOR_MODEL_STORE); rows registered before 0009 may hold the absolute path they were "
        "registered from.",
    )
    band_set_id: Mapped[int] = mapped_column(ForeignKey("band_sets.id"), comment="Bands it serves.")
    param_names: Mapped[list[str]] = mapped_column(
        ARRAY(Text), comment="SPS parameter names, in the model's order."
    )
    training_ranges: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="Training box and training-set statistics, for extrapolation checks."
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="Held-out accuracy figures measured at training time."
    )
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, comment="Training config that made it.")
    created_at: Mapped[datetime] = _now()


class ProcessingRun(Base):
    __tablename__ = "processing_runs"
    __table_args__ = (
        CheckConstraint("kind IN ('infer', 'reprocess')", name="kind"),
        CheckConstraint("status IN ('open', 'complete', 'cancelled')", name="status"),
        {"comment": "A run pins every model, prior and calibration version and the code version."},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="Run id.")
    name: Mapped[str] = mapped_column(Text, unique=True, comment="Run name.")
    kind: Mapped[str] = mapped_column(Text, comment="infer (amortized/MCMC) or reprocess.")
    status: Mapped[str] = mapped_column(Text, comment="open, complete or cancelled.")
    release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id"), comment="Objects as of this release."
    )
    emulator_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id"), nullable=True, comment="Pinned emulator."
    )
    estimator_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id"), nullable=True, comment="Pinned amortized estimator."
    )
    prior_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("prior_versions.id"), nullable=True, comment="Pinned prior."
    )
    calibration_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("calibration_versions.id"), nullable=True, comment="Pinned calibration."
    )
    parent_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("processing_runs.id"),
        nullable=True,
        comment="Run whose posteriors it reweights.",
    )
    code_version: Mapped[str] = mapped_column(Text, comment="lor version (and git commit).")
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, comment="Run settings.")
    created_at: Mapped[datetime] = _now()


class WorkItem(Base):
    __tablename__ = "work_items"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'claimed', 'done', 'failed')", name="state"),
        Index("ix_work_items_pending", "run_id", "state", postgresql_where=text("state <> 'done'")),
        {
            "postgresql_partition_by": "HASH (tract_id)",
            "comment": "The work queue: one item per (run, object), claimed in batches with "
            "FOR UPDATE SKIP LOCKED under a lease.",
        },
    )

    tract_id: Mapped[int] = mapped_column(
        Integer, primary_key=True, comment="Tract (partition key)."
    )
    run_id: Mapped[int] = mapped_column(
        Integer, primary_key=True, comment="Run (a lor.processing_runs id; no foreign key)."
    )
    object_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, comment="Object version to process."
    )
    state: Mapped[str] = mapped_column(Text, comment="pending, claimed, done or failed.")
    attempts: Mapped[int] = mapped_column(
        SmallInteger, server_default="0", comment="How many times it was claimed."
    )
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        nullable=True,
        comment="Claim lease end; expired claims return to pending.",
    )
    claimed_by: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="host:pid of the claimer."
    )
    last_error: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="Last failure message."
    )
    parent_posterior_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), nullable=True, comment="For reprocess runs: posterior to reweight."
    )
    updated_at: Mapped[datetime] = _now()


class Posterior(Base):
    __tablename__ = "posteriors"
    __table_args__ = (
        # (tract, object, run): also the index of one object's posteriors over all runs.
        UniqueConstraint("tract_id", "object_id", "run_id"),
        CheckConstraint(f"method IN ({', '.join(repr(m) for m in METHODS)})", name="method"),
        {
            "postgresql_partition_by": "HASH (tract_id)",
            "comment": "Per-object posteriors: compressed flow parameters, summaries, OOD flags "
            "and provenance. Rows are never updated; reprocessing adds rows.",
        },
    )

    tract_id: Mapped[int] = mapped_column(
        Integer, primary_key=True, comment="Tract (partition key)."
    )
    posterior_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        primary_key=True,
        comment="Deterministic id: uuid5 of (run_id, object_id), so redelivered work is idempotent.",
    )
    run_id: Mapped[int] = mapped_column(Integer, comment="Run that produced it (provenance).")
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), comment="Object version.")
    representation_name: Mapped[str] = mapped_column(Text, comment="Posterior representation name.")
    representation_version: Mapped[str] = mapped_column(Text, comment="Representation version.")
    # The two parameter columns are read and written only through lor.db.params_codec.
    params: Mapped[list[float] | None] = mapped_column(
        ARRAY(REAL),
        nullable=True,
        comment="Redshift marginal of the representation parameters, float32 (a gmm_flow array "
        "with D = 1: K, 1, z_lo, z_hi, logits, redshift means, L00); what lor.pz_* and lor.nz "
        "read. NULL if no posterior.",
    )
    params_rest: Mapped[bytes | None] = mapped_column(
        LargeBinary,
        nullable=True,
        comment="The other representation parameters (means and Cholesky entries besides the "
        "redshift ones, stored order) as little-endian float16; lor.db.params_codec joins them "
        "with params. NULL if no posterior.",
    )
    z_mean: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior mean of redshift."
    )
    z_mode: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior mode of redshift."
    )
    z_std: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior standard deviation of redshift."
    )
    z_q025: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 2.5th percentile of redshift."
    )
    z_q16: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 16th percentile of redshift."
    )
    z_q50: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior median of redshift."
    )
    z_q84: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 84th percentile of redshift."
    )
    z_q975: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 97.5th percentile of redshift."
    )
    log_mstar_mean: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior mean of log10 stellar mass (Msun)."
    )
    log_mstar_mode: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior mode of log10 stellar mass (Msun)."
    )
    log_mstar_std: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior standard deviation of log10 stellar mass (Msun)."
    )
    log_mstar_q025: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 2.5th percentile of log10 stellar mass (Msun)."
    )
    log_mstar_q16: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 16th percentile of log10 stellar mass (Msun)."
    )
    log_mstar_q50: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior median of log10 stellar mass (Msun)."
    )
    log_mstar_q84: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 84th percentile of log10 stellar mass (Msun)."
    )
    log_mstar_q975: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 97.5th percentile of log10 stellar mass (Msun)."
    )
    log_sfr_mean: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior mean of log10 SFR (Msun/yr)."
    )
    log_sfr_mode: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior mode of log10 SFR (Msun/yr)."
    )
    log_sfr_std: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior standard deviation of log10 SFR (Msun/yr)."
    )
    log_sfr_q025: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 2.5th percentile of log10 SFR (Msun/yr)."
    )
    log_sfr_q16: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 16th percentile of log10 SFR (Msun/yr)."
    )
    log_sfr_q50: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior median of log10 SFR (Msun/yr)."
    )
    log_sfr_q84: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 84th percentile of log10 SFR (Msun/yr)."
    )
    log_sfr_q975: Mapped[float | None] = mapped_column(
        REAL, nullable=True, comment="Posterior 97.5th percentile of log10 SFR (Msun/yr)."
    )
    ood_flags: Mapped[int] = mapped_column(
        Integer, comment="OOD bitmask (see lor.inference.flags)."
    )
    method: Mapped[str] = mapped_column(Text, comment="amortized, mcmc, reweighted or none.")
    parent_posterior_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), nullable=True, comment="Posterior this one was reweighted from."
    )
    input_hash: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), comment="Object's input_hash at processing time."
    )
    worker_host: Mapped[str] = mapped_column(Text, comment="host:pid of the worker that wrote it.")
    created_at: Mapped[datetime] = _now()


# Created by migration 0003 (per-tract queries of one run, and since migration 0010 every
# query by run); the object lookups of the views go through the unique (tract_id, object_id,
# run_id) since 0010, which dropped (tract_id, object_id) and (run_id, z_q50).
Index("ix_posteriors_run_id_tract_id_z_q50", Posterior.run_id, Posterior.tract_id, Posterior.z_q50)
# Rows are only appended, so created_at follows the physical order: a BRIN index finds the
# last minute's posteriors (processing rate) by visiting only the newest block ranges.
Index("ix_posteriors_created_at", Posterior.created_at, postgresql_using="brin")
