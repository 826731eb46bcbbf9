"""Named errors for bad user input and bad state.

Every error a user can cause is a subclass of :class:`LorError`, so the CLI can print its
message without a traceback, and tests can assert on the exact kind of failure.
"""

from __future__ import annotations


class LorError(Exception):
    """Base class for errors that carry a message meant for the user."""


class ConfigError(LorError):
    """Settings or a config file are missing or inconsistent."""


class NoProcessorError(ConfigError):
    """No processor can be built for a run (no estimator pinned, or none registered)."""


class StaleSchemaError(LorError):
    """The database schema is not at the revision this code expects."""


class IngestError(LorError):
    """A catalog file cannot be ingested (malformed, unreadable, wrong columns or units)."""


class UnknownBandError(LorError):
    """A band name is not in the bandpass library; the message lists the available ones."""


class ParameterError(LorError):
    """SPS parameters are malformed (NaN, wrong shape, unknown names)."""


class ArtifactError(LorError):
    """A model artifact is missing, corrupted or fails its sha256 check."""


class NotFoundError(LorError):
    """A named database entity (release, run, model version, ...) does not exist."""
