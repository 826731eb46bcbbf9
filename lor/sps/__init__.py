"""lor.sps."""
