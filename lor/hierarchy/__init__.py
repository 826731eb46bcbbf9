"""The hierarchical loop: calibrate zeropoints, noise scales and prior hyperparameters from the
population (:mod:`lor.hierarchy.calibrate`), then bring stored posteriors up to date by
importance reweighting instead of re-running inference (:mod:`lor.hierarchy.reweight`)."""
