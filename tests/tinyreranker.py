"""A tiny random-weight cross-encoder (BertForSequenceClassification, one logit) with a WordPiece
tokenizer trained here, saved as a Hugging Face folder: no reranker ships offline, so the tests build
one in seconds and check onnxvec's scores against PyTorch's logits."""

from __future__ import annotations

from pathlib import Path

MAX_LENGTH = 48  # short, so that tests reach truncation with a sentence or two
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CORPUS = [
    "PostgreSQL stores vectors with pgvector and searches them with an HNSW index.",
    "Redis queues the ingestion tasks that Celery workers run.",
    "A cross-encoder reads the query and the document together and scores their relevance.",
    "The capital of France is Paris; the Seine flows through it.",
    "Bananas are yellow fruit rich in potassium.",
]


def build_tiny_reranker(out: Path) -> Path:
    """Write the model (seeded weights), its config and tokenizer.json to `out`; returns `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(CORPUS * 20, trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIAL))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    # BertTokenizerFast: the special tokens above, and token_type_ids (the pair's two segments) for the model
    BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=MAX_LENGTH).save_pretrained(out)
    torch.manual_seed(0)
    # initializer_range: BERT's 0.02 gives every pair nearly the same logit
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        max_position_embeddings=MAX_LENGTH,
        num_labels=1,
        initializer_range=0.5,
        **sizes,
    )
    BertForSequenceClassification(config).save_pretrained(out)
    return out


def torch_logits(folder: Path, query: str, documents: list[str]) -> list[float]:
    """The PyTorch reference: what transformers computes for the pairs, documents truncated."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = tokenizer(
        [query] * len(documents),
        documents,
        truncation="only_second",
        max_length=MAX_LENGTH,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        return model(**batch).logits[:, 0].tolist()
