"""lor inside the tools LSST DESC and Rubin users already run: HATS catalogs (LSDB) and RAIL
estimator stages. Optional: ``pip install 'lor[interop]'`` brings their packages."""
