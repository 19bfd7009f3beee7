"""The model's fast tokenizer as the engine uses it: the ``tokenizers`` pipeline and its special-token facts.

transformers' fast tokenizers (``PreTrainedTokenizerFast`` and its family classes) keep their whole pipeline
(normaliser, pre-tokenizer, model, post-processor with the special-token template, added tokens) in a
``tokenizers.Tokenizer``, and their ``__call__`` runs ``encode_batch`` on it with truncation and padding set
per call. :class:`TextTokenizer` holds a private copy of that pipeline (truncation and padding off, special-token
strings in the text split or not as the tokenizer's ``split_special_tokens`` says) and the facts a store
records, so the engine encodes exactly as transformers does, and a run that finds them cached
(:mod:`attnx.engine.model_card`) needs neither transformers nor torch (their imports were about 1.4 s of a
one-sentence ``attnx extract``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenizers import Encoding, Tokenizer


@dataclass(frozen=True)
class TextTokenizer:
    """``pipeline``: the tokenizers pipeline (JSON, the ``tokenizer.json`` format); the rest as transformers
    reports it for the same tokenizer."""

    pipeline: str
    name: str  # transformers' ``name_or_path`` (the model directory)
    class_name: str  # transformers' tokenizer class, e.g. BertTokenizer
    size: int  # ``len(tokenizer)``: the vocabulary with added tokens
    cls_id: int | None
    sep_id: int | None
    pad_id: int | None
    special_ids: tuple[int, ...]  # ``all_special_ids``
    lowercase: bool  # ``do_lower_case`` where the tokenizer has it
    split_special_tokens: bool = False  # "[MASK]" in the text is tokenized as text, not as the special token
    backend: Tokenizer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        backend = Tokenizer.from_str(self.pipeline)
        # as transformers' __call__ without truncation and padding leaves it (a tokenizer.json may set both)
        backend.no_truncation()
        backend.no_padding()
        backend.encode_special_tokens = self.split_special_tokens
        object.__setattr__(self, "backend", backend)

    @classmethod
    def from_transformers(cls, tok: object) -> TextTokenizer:
        """The pipeline and facts of a transformers fast tokenizer (``is_fast``)."""
        return cls(
            pipeline=tok.backend_tokenizer.to_str(),
            name=str(getattr(tok, "name_or_path", "") or ""),
            class_name=type(tok).__name__,
            size=len(tok),
            cls_id=tok.cls_token_id,
            sep_id=tok.sep_token_id,
            pad_id=tok.pad_token_id,
            special_ids=tuple(int(i) for i in tok.all_special_ids),
            lowercase=bool(getattr(tok, "do_lower_case", False)),
            split_special_tokens=bool(getattr(tok, "split_special_tokens", False)),
        )

    def to_dict(self) -> dict:
        """JSON-safe: everything :meth:`from_dict` needs."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if k != "backend"}

    @classmethod
    def from_dict(cls, d: dict) -> TextTokenizer:
        return cls(**{**d, "special_ids": tuple(d["special_ids"])})

    def encode(
        self,
        texts: Sequence[str | Sequence[str]],
        pairs: Sequence[str | Sequence[str]] | None = None,
        special: bool = True,
        pretokenized: bool = False,
    ) -> list[Encoding]:
        """One :class:`tokenizers.Encoding` per text (``.ids``, ``.word_ids``), with ``pairs[i]`` as segment B
        when given; ``pretokenized``: each text is a list of words. As ``tokenizer(texts, pairs,
        add_special_tokens=special, is_split_into_words=pretokenized)`` in transformers."""
        if not texts:
            return []
        batch = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        return self.backend.encode_batch(batch, add_special_tokens=special, is_pretokenized=pretokenized)

    def ids(self, text: str | Sequence[str], pair: str | None = None, special: bool = True,
            pretokenized: bool = False) -> list[int]:
        """Token ids of one text (or pair)."""
        return self.encode([text], None if pair is None else [pair], special, pretokenized)[0].ids

    def get_vocab(self) -> dict[str, int]:
        """Piece -> id, added tokens included (transformers' ``get_vocab``)."""
        return self.backend.get_vocab(with_added_tokens=True)


def text_tokenizer(tok: object) -> TextTokenizer:
    """``tok`` itself if it is a :class:`TextTokenizer`, else the one of a transformers fast tokenizer."""
    return tok if isinstance(tok, TextTokenizer) else TextTokenizer.from_transformers(tok)
