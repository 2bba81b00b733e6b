from onnxvec.cli import app

app()
