"""HTTP layer: FastAPI app and routers over the onnxvec core library (issue 4)."""
