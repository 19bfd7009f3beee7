"""Corpus readers: text, TSV pairs, JSONL and CoNLL-U, plain or gzip, from a file or stdin, streamed.

Every reader yields :class:`Record`s in input order, numbered from 0, each with its 1-based source line.

Empty lines: in text and TSV files an empty line is a record of its own (an empty sentence, stored as
``[CLS] [SEP]``, length 2), so record numbers and line numbers stay aligned; in JSONL blank lines are
skipped; in CoNLL-U they end a sentence.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from attnx.errors import InputError

FORMATS = ("text", "tsv", "jsonl", "conllu")
_EXT = {".txt": "text", ".text": "text", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".conllu": "conllu"}


@dataclass(frozen=True)
class Words:
    """CoNLL-U annotation of one sentence: ``w`` syntactic words (multiword ranges and empty nodes left out)."""

    forms: tuple[str, ...]  # (w,)
    heads: tuple[int, ...]  # (w,) 0-based index of the head word, -1 for the root
    deprels: tuple[str, ...]  # (w,) full UD relation, subtype included (e.g. "nmod:poss")


@dataclass(frozen=True)
class Record:
    id: int  # 0-based input order
    line: int  # 1-based line where the record starts
    text_a: str
    text_b: str | None = None
    words: Words | None = None


def detect_format(path: str, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InputError(path, None, f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    if path == "-":
        return "text"
    name = path[:-3] if path.endswith(".gz") else path
    suffix = Path(name).suffix.lower()
    if suffix not in _EXT:
        raise InputError(path, None, f"cannot tell the format from the extension {suffix!r}: give --format")
    return _EXT[suffix]


class HashingReader(io.RawIOBase):
    """Wraps a binary stream and hashes every byte read through it (the input's sha256)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.nbytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha.update(data)
        self.nbytes += n
        return n


def input_fingerprint(path: str) -> dict:
    """Identity of an input file for resume checks: path, size, sha256 of its first MiB (raw bytes)."""
    if path == "-":
        return {"path": "-"}
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(1 << 20)
    return {"path": str(p.resolve()), "size": p.stat().st_size, "head_sha256": hashlib.sha256(head).hexdigest()}


def raw_sha256(path: str) -> str:
    """sha256 of a file's bytes as stored (or of all of stdin for ``-``), read in 16 MiB blocks."""
    sha = hashlib.sha256()
    fh = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below unless stdin
    try:
        for block in iter(lambda: fh.read(1 << 24), b""):
            sha.update(block)
    finally:
        if path != "-":
            fh.close()
    return sha.hexdigest()


class Source:
    """A streamed corpus. Iterate for records; ``sha256`` is the hash of all bytes read (after the end)."""

    def __init__(
        self,
        path: str,
        fmt: str | None = None,
        text_field: str = "text",
        pair_field: str | None = "text_b",
    ) -> None:
        self.path = path
        self.format = detect_format(path, fmt)
        if path != "-" and not Path(path).is_file():
            raise InputError(
                path, None, "cannot open: no such file" if not Path(path).exists() else "cannot open: not a file"
            )
        self.text_field = text_field
        self.pair_field = pair_field
        self._hasher: HashingReader | None = None
        self._content = hashlib.sha256()
        self._data: bytes | None = None  # a shard's bytes (from_bytes) instead of the file
        self._first_line = 1  # line number of the first line read
        self._first_id = 0  # input id of the first record read

    @classmethod
    def from_bytes(
        cls,
        path: str,
        data: bytes,
        fmt: str,
        first_line: int,
        first_id: int,
        text_field: str = "text",
        pair_field: str | None = "text_b",
    ) -> Source:
        """A contiguous piece of ``path`` (a shard: whole records, decompressed) that starts at line
        ``first_line`` with record ``first_id``; records and errors carry the numbers of the whole input."""
        self = cls.__new__(cls)
        self.path, self.format = path, detect_format(path, fmt)
        self.text_field, self.pair_field = text_field, pair_field
        self._hasher, self._content = None, hashlib.sha256()
        self._data, self._first_line, self._first_id = data, first_line, first_id
        return self

    @property
    def sha256(self) -> str | None:
        """sha256 of the raw bytes read (the file as stored, compressed or not), once read to the end."""
        return self._hasher.sha.hexdigest() if self._hasher else None

    def content_digest(self) -> str:
        """sha256 of the (decompressed) content consumed so far, line by line: independent of buffering, so
        a resumed run can check that the part it skips is the part the store was made from."""
        return self._content.copy().hexdigest()

    def _open(self) -> BinaryIO:
        if self._data is not None:
            return io.BytesIO(self._data)
        if self.path == "-":
            if sys.stdin is None or sys.stdin.closed:
                raise InputError("-", None, "cannot read standard input: it is closed")
            raw: BinaryIO = sys.stdin.buffer
        else:
            try:
                raw = open(self.path, "rb")  # noqa: SIM115 - closed by the caller's generator
            except OSError as exc:
                raise InputError(self.path, None, f"cannot open: {exc.strerror or exc}") from exc
        self._hasher = HashingReader(raw)
        stream: BinaryIO = io.BufferedReader(self._hasher, buffer_size=1 << 20)
        head = stream.peek(2)[:2]
        if head == b"\x1f\x8b" or self.path.endswith(".gz"):
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        return stream

    def raw_lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, the line's bytes as read, newline included), decompressed; updates the content
        digest line by line."""
        self._content = hashlib.sha256()
        try:
            stream = self._open()
        except (OSError, ValueError) as exc:
            raise InputError(self.path, None, f"cannot read: {exc}") from None
        try:
            lineno = self._first_line - 1
            while True:
                try:
                    raw = stream.readline()
                except (OSError, EOFError, ValueError, zlib.error) as exc:
                    problem = "corrupted compressed input" if self.path.endswith(".gz") else "cannot read input"
                    raise InputError(self.path, lineno + 1, f"{problem} ({exc})") from None
                if not raw:
                    return
                self._content.update(raw)
                lineno += 1
                yield lineno, raw
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(1-based line number, decoded line without its newline)."""
        for lineno, raw in self.raw_lines():
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(self.path, lineno, f"invalid UTF-8 at byte {exc.start} of the line") from exc
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield lineno, text.rstrip("\r\n")

    def __iter__(self) -> Iterator[Record]:
        reader = {"text": self._text, "tsv": self._tsv, "jsonl": self._jsonl, "conllu": self._conllu}[self.format]
        return reader()

    def _text(self) -> Iterator[Record]:
        for n, (lineno, line) in enumerate(self._lines(), self._first_id):
            yield Record(n, lineno, line.strip())

    def _tsv(self) -> Iterator[Record]:
        for n, (lineno, line) in enumerate(self._lines(), self._first_id):
            if not line.strip():
                yield Record(n, lineno, "")
                continue
            fields = line.split("\t")
            if len(fields) == 1:
                yield Record(n, lineno, fields[0].strip())
            elif len(fields) == 2:
                yield Record(n, lineno, fields[0].strip(), fields[1].strip())
            else:
                raise InputError(self.path, lineno, f"expected 1 or 2 tab-separated fields, found {len(fields)}")

    def _jsonl(self) -> Iterator[Record]:
        n = self._first_id
        for lineno, line in self._lines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(self.path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise InputError(self.path, lineno, "expected a JSON object per line")
            text = obj.get(self.text_field)
            if not isinstance(text, str):
                raise InputError(self.path, lineno, f"field {self.text_field!r} missing or not a string")
            pair = obj.get(self.pair_field) if self.pair_field else None
            if pair is not None and not isinstance(pair, str):
                raise InputError(self.path, lineno, f"field {self.pair_field!r} is not a string")
            for value in (text, pair or ""):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    code = ord(value[exc.start])
                    raise InputError(
                        self.path, lineno, f"invalid text: lone surrogate \\u{code:04x} in a JSON string"
                    ) from None
            yield Record(n, lineno, text.strip(), pair.strip() if pair is not None else None)
            n += 1

    def _conllu(self) -> Iterator[Record]:
        n = self._first_id
        start = None
        rows: list[tuple[int, list[str]]] = []
        for lineno, line in self._lines():
            if not line.strip():
                if rows:
                    yield self._conllu_sentence(n, start or lineno, rows)
                    n += 1
                rows, start = [], None
                continue
            if start is None:
                start = lineno
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                raise InputError(
                    self.path, lineno, f"CoNLL-U token line needs 10 tab-separated fields, found {len(fields)}"
                )
            rows.append((lineno, fields))
        if rows:
            yield self._conllu_sentence(n, start or 1, rows)

    def _conllu_sentence(self, n: int, start: int, rows: list[tuple[int, list[str]]]) -> Record:
        forms: list[str] = []
        heads: list[int] = []
        deprels: list[str] = []
        for lineno, fields in rows:
            ident = fields[0]
            if "-" in ident or "." in ident:  # multiword token range or empty node
                continue
            try:
                index, head = int(ident), int(fields[6])
            except ValueError:
                raise InputError(self.path, lineno, f"ID {ident!r} / HEAD {fields[6]!r} is not an integer") from None
            if index != len(forms) + 1:
                raise InputError(self.path, lineno, f"word ID {index} out of sequence (expected {len(forms) + 1})")
            forms.append(fields[1])
            heads.append(head - 1)
            deprels.append(fields[7])
        if not forms:
            raise InputError(self.path, start, "sentence without words")
        for (lineno, _), head in zip(
            (r for r in rows if "-" not in r[1][0] and "." not in r[1][0]), heads, strict=True
        ):
            if not -1 <= head < len(forms):
                raise InputError(self.path, lineno, f"HEAD {head + 1} outside the sentence (1..{len(forms)})")
        words = Words(tuple(forms), tuple(heads), tuple(deprels))
        return Record(n, start, " ".join(forms), None, words)
