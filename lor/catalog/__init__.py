"""Catalogs in: file readers, photometry conversion, ingest into lor.objects, tracts, truth tables, the shipped example catalog."""
