"""Tokenize windows of records into flat arrays, in a background thread.

A window is ``n`` consecutive input records. Its tokens are kept flat (``T`` wordpieces in all, with
``offsets``), never as per-record Python lists, so later stages gather and pad with numpy alone.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice

import numpy as np

from attnx.engine.sources import Record, Source
from attnx.engine.text_tokenizer import TextTokenizer, text_tokenizer
from attnx.errors import InputError, ModelError
from attnx.threads import read_ahead


@dataclass(frozen=True)
class TokenizedWindow:
    """``n`` records, ``T`` tokens, ``W`` CoNLL-U words (0 for other formats)."""

    first_id: int  # input id of record 0 of the window
    ids: np.ndarray  # (T,) int32 wordpiece ids, with the tokenizer's special tokens ([CLS]/[SEP], <s>/</s>)
    offsets: np.ndarray  # (n+1,) int64 record k's tokens are ids[offsets[k]:offsets[k+1]]
    segment: np.ndarray  # (T,) int8
    special: np.ndarray  # (T,) bool
    punct: np.ndarray  # (T,) bool
    word: np.ndarray  # (T,) int32 word index within the record, -1 for special tokens
    length: np.ndarray  # (n,) int32
    len_a: np.ndarray  # (n,) int32 tokens up to and including the first separator after segment A
    line: np.ndarray  # (n,) int64
    truncated: np.ndarray  # (n,) bool
    word_head: np.ndarray | None = None  # (W,) int32
    word_deprel: np.ndarray | None = None  # (W,) object (str)
    word_offsets: np.ndarray | None = None  # (n+1,) int64
    index: int = 0  # window number in the input (window k holds records k*size .. (k+1)*size - 1)
    input_digest: str = ""  # sha256 of the input's content up to the end of this window

    def __len__(self) -> int:
        return len(self.length)


# word-boundary markers of WordPiece continuations, byte-level BPE (RoBERTa) and SentencePiece (XLM-R, ALBERT)
_PIECE_MARKERS = ("##", "\u0120", "\u2581")


def punctuation_vocab(vocab: list[str]) -> np.ndarray:
    """(V,) bool: pieces made only of Unicode punctuation or symbols (a leading ``##``, ``Ġ`` or ``▁``
    word marker ignored). A fresh array each call; the scan itself runs once per vocabulary and process (a
    run makes two tokenizers of one vocabulary: the store's and the loop's)."""
    return _punctuation_vocab(tuple(vocab)).copy()


@functools.lru_cache(maxsize=4)
def _punctuation_vocab(vocab: tuple[str, ...]) -> np.ndarray:
    out = np.zeros(len(vocab), bool)
    for i, piece in enumerate(vocab):
        core = piece
        for marker in _PIECE_MARKERS:
            if core.startswith(marker):
                core = core[len(marker) :]
                break
        if core and not (core.startswith("[") and core.endswith("]")):
            out[i] = all(unicodedata.category(c)[0] in "PS" for c in core)
    return out


@dataclass(frozen=True)
class SpecialTemplate:
    """Where a tokenizer puts its special tokens: ``prefix A suffix`` for one segment, ``pair_prefix A
    pair_mid B pair_suffix`` for two (BERT ``[CLS] A [SEP] B [SEP]``; RoBERTa ``<s> A </s></s> B </s>``)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    pair_prefix: tuple[int, ...]
    pair_mid: tuple[int, ...]
    pair_suffix: tuple[int, ...]

    @property
    def single_extra(self) -> int:
        return len(self.prefix) + len(self.suffix)

    @property
    def pair_extra(self) -> int:
        return len(self.pair_prefix) + len(self.pair_mid) + len(self.pair_suffix)


def _words_need_space(tokenizer: TextTokenizer) -> bool:
    """True when pre-split words tokenize differently from the same words in running text and a leading
    space per word fixes it (byte-level BPE without ``add_prefix_space``), so CoNLL-U word forms get the
    pieces the model saw in training."""
    words = ["hello", "world", "again"]
    running = tokenizer.ids(" ".join(words), special=False)
    split = tokenizer.ids(words, special=False, pretokenized=True)
    if split == running:
        return False
    spaced = tokenizer.ids([words[0], *(" " + w for w in words[1:])], special=False, pretokenized=True)
    return spaced == running


def _find(haystack: list[int], needle: list[int]) -> int:
    for k in range(len(haystack) - len(needle) + 1):
        if haystack[k : k + len(needle)] == needle:
            return k
    return -1


def special_template(tokenizer: TextTokenizer) -> SpecialTemplate:
    """Read the special-token template off the tokenizer itself by encoding two probe words with and
    without special tokens (so each family's own post-processor decides, never a hard-coded BERT layout)."""
    a_text, b_text = "hello", "world"
    a = tokenizer.ids(a_text, special=False)
    b = tokenizer.ids(b_text, special=False)
    one = tokenizer.ids(a_text)
    two = tokenizer.ids(a_text, b_text)
    i = _find(one, a)
    ia = _find(two, a)
    ib = _find(two[ia + len(a) :], b) + ia + len(a) if ia >= 0 else -1
    name = tokenizer.name or tokenizer.class_name
    if not a or not b or i < 0 or ia < 0 or ib < ia + len(a):
        raise ModelError(f"{name}: cannot read the special-token template off this tokenizer")
    if i == 0:
        raise ModelError(
            f"{name}: the tokenizer adds no start token ([CLS] / <s>) - its tokenizer.json has no post-processor; "
            "attnx needs the special tokens the model was trained with"
        )
    return SpecialTemplate(
        prefix=tuple(one[:i]),
        suffix=tuple(one[i + len(a) :]),
        pair_prefix=tuple(two[:ia]),
        pair_mid=tuple(two[ia + len(a) : ib]),
        pair_suffix=tuple(two[ib + len(b) :]),
    )


class WindowTokenizer:
    """Turns records into :class:`TokenizedWindow`s with the model's fast tokenizer (a :class:`TextTokenizer`,
    or a transformers fast tokenizer, whose pipeline it copies).

    Special tokens and their places follow the tokenizer's own template (:func:`special_template`).
    Segment A (``segment`` 0, ``len_a``) runs from the start up to and including the first separator
    after A's tokens; segment B (1) is the rest. Sequences longer than ``max_length`` (specials included)
    are cut (longest segment first for pairs) and flagged, or rejected when ``truncate`` is false.
    """

    def __init__(self, tokenizer: object, max_length: int, truncate: bool = True, source_name: str = "") -> None:
        tokenizer = text_tokenizer(tokenizer)
        self.tok = tokenizer
        self.max_length = max_length
        self.truncate = truncate
        self.source_name = source_name
        self.cls_id = tokenizer.cls_id
        self.sep_id = tokenizer.sep_id
        self.template = special_template(tokenizer)
        self.space_words = _words_need_space(tokenizer)
        vocab_map = tokenizer.get_vocab()
        vocab = [""] * (max(vocab_map.values()) + 1)
        for piece, idx in vocab_map.items():
            vocab[idx] = piece
        self.vocab = vocab
        self.punct = punctuation_vocab(vocab)
        self.special = np.zeros(len(vocab), bool)
        self.special[list(tokenizer.special_ids)] = True
        self.punct &= ~self.special

    def _words(self, forms: tuple[str, ...]) -> list[str]:
        """Pre-split words as the tokenizer sees them in running text: byte-level BPE (RoBERTa) marks a word
        after a space with ``Ġ``, which ``is_split_into_words`` drops unless the word carries its space."""
        if not self.space_words or not forms:
            return list(forms)
        return [forms[0], *(" " + w for w in forms[1:])]

    def _encode(self, texts: list, split: bool = False) -> tuple[list[list[int]], list[list[int | None]]]:
        # no truncation here: __call__ cuts (longest first) and flags what is too long
        encodings = self.tok.encode(texts, special=False, pretokenized=split)
        return [e.ids for e in encodings], [e.word_ids for e in encodings]

    def __call__(self, records: list[Record]) -> TokenizedWindow:
        conllu = bool(records) and records[0].words is not None
        if conllu:
            ids_a, wid_a = self._encode([self._words(r.words.forms) for r in records], split=True)
        else:
            ids_a, wid_a = self._encode([r.text_a for r in records])
        pair_idx = [k for k, r in enumerate(records) if r.text_b is not None]
        ids_b_list, wid_b_list = self._encode([records[k].text_b for k in pair_idx])
        ids_b: dict[int, list[int]] = dict(zip(pair_idx, ids_b_list, strict=True))
        wid_b: dict[int, list[int | None]] = dict(zip(pair_idx, wid_b_list, strict=True))

        n = len(records)
        length = np.empty(n, np.int32)
        len_a = np.empty(n, np.int32)
        truncated = np.zeros(n, bool)
        pieces_ids: list[np.ndarray] = []
        pieces_seg: list[np.ndarray] = []
        pieces_word: list[np.ndarray] = []
        tpl = self.template
        for k, rec in enumerate(records):
            a, wa = ids_a[k], wid_a[k]
            b, wb = ids_b.get(k), wid_b.get(k)
            extra = tpl.pair_extra if b is not None else tpl.single_extra
            budget = self.max_length - extra
            na, nb = len(a), (len(b) if b is not None else 0)
            if na + nb > budget:
                if not self.truncate:
                    raise InputError(
                        self.source_name,
                        rec.line,
                        f"{na + nb + extra} wordpieces exceed --max-length "
                        f"{self.max_length} (drop --no-truncate to cut and flag it)",
                    )
                truncated[k] = True
                while na + nb > budget:  # longest_first, like transformers' truncation
                    if na >= nb:
                        na -= 1
                    else:
                        nb -= 1
            words_a = max((w for w in wa[:na] if w is not None), default=-1) + 1 if not conllu else len(rec.words.forms)
            word_a = [w if w is not None else -1 for w in wa[:na]]
            if b is None:
                pre, post = tpl.prefix, tpl.suffix
                ids = [*pre, *a[:na], *post]
                word = [-1] * len(pre) + word_a + [-1] * len(post)
                la = len(ids)  # one segment: all of it is A
            else:
                pre, mid, post = tpl.pair_prefix, tpl.pair_mid, tpl.pair_suffix
                ids = [*pre, *a[:na], *mid, *b[:nb], *post]
                word_b = [w + words_a if w is not None else -1 for w in wb[:nb]]
                word = [-1] * len(pre) + word_a + [-1] * len(mid) + word_b + [-1] * len(post)
                la = len(pre) + na + min(1, len(mid))
            seg = [0] * la + [1] * (len(ids) - la)
            length[k] = len(ids)
            len_a[k] = la
            pieces_ids.append(np.asarray(ids, np.int32))
            pieces_seg.append(np.asarray(seg, np.int8))
            pieces_word.append(np.asarray(word, np.int32))
        ids_flat = np.concatenate(pieces_ids) if pieces_ids else np.empty(0, np.int32)
        extra = {}
        if conllu:
            counts = np.array([len(r.words.forms) for r in records], np.int64)
            extra = dict(
                word_head=np.array([h for r in records for h in r.words.heads], np.int32),
                word_deprel=np.array([d for r in records for d in r.words.deprels], dtype=object),
                word_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            )
        return TokenizedWindow(
            first_id=records[0].id if records else 0,
            ids=ids_flat,
            offsets=np.concatenate([[0], np.cumsum(length, dtype=np.int64)]),
            segment=np.concatenate(pieces_seg) if pieces_seg else np.empty(0, np.int8),
            special=self.special[ids_flat],
            punct=self.punct[ids_flat],
            word=np.concatenate(pieces_word) if pieces_word else np.empty(0, np.int32),
            length=length,
            len_a=len_a,
            line=np.array([r.line for r in records], np.int64),
            truncated=truncated,
            **extra,
        )


def windows(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Consecutive lists of ``size`` records (the last may be shorter)."""
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


def tokenize_in_background(
    source: Source,
    tokenizer: WindowTokenizer,
    size: int,
    ahead: int,
    skip_windows: int = 0,
    expect: tuple[int, str] | None = None,
    first_window: int = 0,
    first_changed: Callable[[int], tuple[int, int] | None] | None = None,
) -> Iterator[TokenizedWindow]:
    """Read and tokenize windows on a worker thread, ``ahead`` windows ahead of the consumer.

    The first ``skip_windows`` windows are read (to advance the input) but not tokenized: resume.
    ``expect = (window, digest)``: the input's content digest at the end of that window must be ``digest``
    (what the store was made from), else the input changed and an :class:`InputError` stops the run before
    anything is written. Errors raised while reading or tokenizing are re-raised in the consumer.
    ``first_window``: the number of the source's first window in the whole input (a shard's source).
    ``first_changed(records)``: on such a refusal, ``(record, line)`` of the first of those records whose tokens
    differ from the store's, or None where none does (the error then names the window's records).
    """

    def produce() -> Iterator[TokenizedWindow]:
        k = -1
        for k, chunk in enumerate(windows(source, size)):
            digest = source.content_digest()
            if expect is not None and k == expect[0] and digest != expect[1]:
                where = first_changed(k * size + len(chunk)) if first_changed else None
                changed = (
                    f"record {where[0]} is the first whose tokens changed" if where
                    else f"records {k * size}..{k * size + len(chunk) - 1} changed"
                )
                raise InputError(
                    source.path,
                    where[1] if where else chunk[-1].line,
                    f"differs from the input this store was started with ({changed}); give the original input, "
                    "or --overwrite to start again",
                )
            if k >= skip_windows:
                yield replace(tokenizer(chunk), index=first_window + k, input_digest=digest)
        if expect is not None and k < expect[0]:
            raise InputError(
                source.path, None, "has fewer records than this store already holds; give the original input"
            )

    return read_ahead(produce, ahead, "attnx-tokenizer")
