# CPU image for the api and worker services. The models (MiniLM embeddings, the default chat model
# Qwen2.5-Coder-0.5B-Instruct and the small SmolLM2-135M, both built int4) are pulled at build time, so
# containers start without any download.
# BASE: any Debian-like image with Python 3.11+ and venv; TORCH_INDEX: where the CPU build of torch
# (needed only to build the chat model) comes from.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    ONNXVEC_HOME=/var/lib/onnxvec \
    VIRTUAL_ENV=/opt/onnxvec \
    PATH=/opt/onnxvec/bin:$PATH

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY onnxvec onnxvec
COPY api api
COPY worker worker
COPY migrations migrations

# the build extra is removed once the chat model is built: the services need none of it
RUN python3 -m venv /opt/onnxvec \
    && pip install --extra-index-url "${TORCH_INDEX}" -e '.[build]' \
    && onnxvec models pull all-MiniLM-L6-v2 \
    && onnxvec models pull SmolLM2-135M-Instruct \
    && onnxvec models pull Qwen2.5-Coder-0.5B-Instruct \
    && pip uninstall -y torch transformers accelerate gguf onnxscript onnx-ir \
    && useradd --system --home-dir /var/lib/onnxvec onnxvec \
    && chown -R onnxvec /var/lib/onnxvec

USER onnxvec
EXPOSE 8080
CMD ["onnxvec", "serve", "--host", "0.0.0.0", "--port", "8080"]
