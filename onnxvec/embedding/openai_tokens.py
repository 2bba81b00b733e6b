"""Token-id inputs from OpenAI clients: decoded with OpenAI's cl100k_base, tokenized again for the model.

OpenAI's /v1/embeddings takes token arrays in its models' encoding, cl100k_base, and LangChain's
OpenAIEmbeddings sends nothing else by default (check_embedding_ctx_length=True: it tokenizes with
tiktoken, falling back to cl100k_base for a model name it does not know). Read as the onnxvec model's
own vocabulary, those ids give meaningless vectors. So by default (ONNXVEC_TOKEN_IDS=cl100k_base)
token arrays are decoded to text and embedded exactly as that text would be, special tokens
included; ONNXVEC_TOKEN_IDS=model takes them as the model's own ids, as given.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from onnxvec.errors import ModelError

if TYPE_CHECKING:
    import tiktoken


class EncodingUnavailable(ModelError):
    """cl100k_base is not in the model store (pulled with the catalog's embedding models)."""


_loading = threading.Lock()


@cache
def _encoding(folder: Path) -> tiktoken.Encoding:
    import tiktoken

    if not any(folder.glob("*")):
        raise EncodingUnavailable(
            "token-id inputs need OpenAI's cl100k_base encoding, fetched by `onnxvec models pull "
            "all-MiniLM-L6-v2`; send text instead, or set ONNXVEC_TOKEN_IDS=model for the model's own ids"
        )
    # tiktoken looks for the file in its cache folder, named by the sha1 of its download address: the
    # model store keeps it under that name, so pointing tiktoken there while it loads downloads nothing
    with _loading:
        saved = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            return tiktoken.get_encoding("cl100k_base")
        finally:
            if saved is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = saved


def decode(ids: Sequence[Sequence[int]], folder: Path) -> list[str]:
    """The texts an OpenAI client tokenized; ValueError names an id outside cl100k_base."""
    encoding = _encoding(folder)
    for seq in ids:
        if min(seq) < 0 or max(seq) >= encoding.n_vocab:
            raise ValueError(f"token ids must lie in [0, {encoding.n_vocab}) (OpenAI's cl100k_base encoding)")
    try:
        # "replace": LangChain cuts long texts into 8191-token pieces, which may split a character
        return encoding.decode_batch([list(seq) for seq in ids], errors="replace")
    except KeyError as exc:  # an id inside the range that the encoding does not use
        raise ValueError(f"token id {exc} is not in OpenAI's cl100k_base encoding") from exc
