# CPU image for the api and worker services. The default models (MiniLM embeddings and the SmolLM2
# chat model, built int4) are pulled at build time, so containers start without any download.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    ONNXVEC_HOME=/var/lib/onnxvec

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY onnxvec onnxvec
COPY api api
COPY worker worker
COPY migrations migrations

# the build extra (CPU torch) is only needed to build the chat model; it is removed afterwards
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -e '.[build]' \
    && onnxvec models pull all-MiniLM-L6-v2 \
    && onnxvec models pull SmolLM2-135M-Instruct \
    && pip uninstall -y torch transformers accelerate gguf onnxscript onnx-ir \
    && useradd --system --home-dir /var/lib/onnxvec onnxvec \
    && chown -R onnxvec /var/lib/onnxvec

USER onnxvec
EXPOSE 8080
CMD ["onnxvec", "serve", "--host", "0.0.0.0", "--port", "8080"]
