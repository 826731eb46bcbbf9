"""lor.cli."""
