"""lor.pipeline."""
