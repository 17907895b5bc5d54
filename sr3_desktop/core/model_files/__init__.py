"""The model files and their trust: card, registry, safety checks, probe, the onnxruntime session."""
