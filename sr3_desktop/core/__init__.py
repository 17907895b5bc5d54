"""Inference core: numpy + onnxruntime + Pillow only. Never import Qt or torch here."""
