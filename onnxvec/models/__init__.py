"""Models: the local store, the offline catalog, and building ONNX models from wheels."""
