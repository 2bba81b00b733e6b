"""Every error onnxvec raises on purpose, in one hierarchy: each class carries the HTTP status, code
and parameter it is answered with (api/errors.py maps them once), and the CLI prints any of them as
one line (onnxvec/cli/__init__.py)."""

from __future__ import annotations


class OnnxvecError(Exception):
    """Something a user can cause or meet; the message says why."""

    status = 500
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] | None = None

    def public_message(self) -> str:
        """What a client is told."""
        return str(self)


class InvalidRequest(OnnxvecError):
    """A request the client must change; `param` names the field at fault."""

    status, code = 400, "invalid_value"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StoreError(InvalidRequest):
    """A store request that cannot be served as asked (a name taken, a wrong dimension, ...)."""


class FilterError(StoreError):
    """A metadata filter that cannot mean what it says."""

    param = "filter"

    def __init__(self, message: str) -> None:
        super().__init__(message, "filter")


class CollectionNotFound(StoreError):
    status, code = 404, "collection_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, "collection")


class DocumentNotFound(StoreError):
    status, code = 404, "document_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, "document_id")


class VersionNotFound(StoreError):
    status, code = 404, "version_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, "version")


class SourceNotFound(StoreError):
    status, code = 404, "source_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, "name")


class ModelError(OnnxvecError):
    """A model cannot be pulled or used."""

    status, code, param = 503, "model_unavailable", "model"

    def public_message(self) -> str:
        return f"The model cannot be used: {self}"


class ModelNotFound(ModelError):
    status, code = 404, "model_not_found"

    def public_message(self) -> str:
        return str(self)


class ConfigurationError(OnnxvecError):
    """The server is set up in a way that cannot work (ONNXVEC_PROVIDER=cuda without CUDA)."""

    status, code = 503, "server_misconfigured"


class ServiceError(OnnxvecError):
    """An embedded server cannot be started as configured."""

    status = 503


class Overloaded(OnnxvecError):
    """The caller has as much work waiting as it may; it should retry shortly."""

    status, code = 429, "too_many_requests"
    headers = {"Retry-After": "1"}

    def public_message(self) -> str:
        return f"The model is busy ({self}); retry shortly."


class PromptTooLong(InvalidRequest):
    """Even the system message and the last message alone do not fit the model's context."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "messages")


class GenerationError(InvalidRequest):
    """The request cannot be generated as asked (a JSON schema the constraint engine rejects)."""
