"""lor.inference."""
