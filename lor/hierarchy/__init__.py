"""The hierarchical loop: fit the population prior's hyperparameters to stored posteriors
(:mod:`lor.hierarchy.calibrate`), then bring stored posteriors up to date after a prior or
calibration change by importance reweighting instead of re-running inference
(:mod:`lor.hierarchy.reweight`)."""
