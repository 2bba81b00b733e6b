"""HTTP layer: the FastAPI app and its routers over the onnxvec core library."""
