"""Processing runs: create/extend runs, the work-item queue loop, processors and their heartbeats."""
