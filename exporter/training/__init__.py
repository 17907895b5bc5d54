"""Training: data, degradations, the objective, the loop, checkpoints, validation, devices."""
