"""onnxvec: ONNX embeddings into pgvector, with an OpenAI-compatible API."""

__version__ = "0.1.0"
