"""Results out: export of posteriors and the end-to-end demo with its plots."""
