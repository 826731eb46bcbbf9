"""lor: survey photometry to physical posteriors with a hierarchical SPS model over PostgreSQL."""

from __future__ import annotations

__version__ = "0.1.0"
