"""Export and verification: a checkpoint's EMA weights to ONNX with the model card; parity checks."""
