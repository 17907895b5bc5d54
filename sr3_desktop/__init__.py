"""SR3 Desktop: image super-resolution by iterative refinement (Saharia et al., TPAMI 2023)."""

__version__ = "0.1.0"
