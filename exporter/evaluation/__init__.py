"""Evaluation and schedule search: metrics on crops, inference presets written into the card."""
