"""The hierarchical loop: Step 2 calibration from stored posteriors and Step 3 reprocessing (work items and set-based prior chunks)."""
