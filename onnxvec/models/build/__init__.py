"""Building models: ONNX export, int8 quantization and its measured choice, genai chat models."""
