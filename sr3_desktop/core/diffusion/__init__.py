"""The diffusion maths: noise schedules and sampler steps (float64 gamma chains, no I/O)."""
