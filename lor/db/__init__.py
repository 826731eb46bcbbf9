"""lor.db."""
