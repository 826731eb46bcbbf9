"""lor.posteriors."""
