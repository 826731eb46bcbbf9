"""lor.emulators."""
