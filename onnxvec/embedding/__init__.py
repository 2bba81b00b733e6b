"""Text to normalized vectors: tokenizer, chunker, batching, the ONNX engine and the API's micro-batches."""
