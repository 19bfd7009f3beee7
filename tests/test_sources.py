"""Corpus readers: formats, gzip, stdin, and one-line errors naming file and line."""

from __future__ import annotations

import gzip
import io
import sys

import pytest

from attnx.engine.sources import Source, detect_format
from attnx.errors import InputError


def read(path, fmt=None, **kw):
    return list(Source(str(path), fmt, **kw))


def test_text_keeps_empty_lines_and_line_numbers(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("First one.\n\n  Third line  \n", encoding="utf-8")
    recs = read(p)
    assert [(r.id, r.line, r.text_a) for r in recs] == [(0, 1, "First one."), (1, 2, ""), (2, 3, "Third line")]


def test_gzip_and_hash(tmp_path):
    p = tmp_path / "a.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write("a b\nc d\n")
    src = Source(str(p))
    assert [r.text_a for r in src] == ["a b", "c d"]
    assert src.format == "text" and len(src.sha256) == 64


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x y\nz\n")))
    assert [r.text_a for r in Source("-")] == ["x y", "z"]


def test_tsv_pairs_and_bad_field_count(tmp_path):
    p = tmp_path / "p.tsv"
    p.write_text("a\tb\nsingle\n", encoding="utf-8")
    recs = read(p)
    assert (recs[0].text_a, recs[0].text_b, recs[1].text_b) == ("a", "b", None)
    p.write_text("a\tb\nx\ty\tz\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"p\.tsv:2: expected 1 or 2 tab-separated fields, found 3"):
        read(p)


def test_invalid_utf8_names_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(InputError, match=r"bad\.txt:3: invalid UTF-8 at byte 7"):
        read(p)


def test_jsonl_fields_and_errors(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "hi", "text_b": "there"}\n\n{"text": "solo"}\n', encoding="utf-8")
    recs = read(p)
    assert [(r.line, r.text_a, r.text_b) for r in recs] == [(1, "hi", "there"), (3, "solo", None)]
    p.write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.jsonl:2: field 'text' missing or not a string"):
        read(p)
    p.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.jsonl:2: invalid JSON"):
        read(p)


CONLLU = """# sent_id = s1
# text = Dogs bark loudly.
1\tDogs\tdog\tNOUN\t_\t_\t2\tnsubj\t_\t_
2\tbark\tbark\tVERB\t_\t_\t0\troot\t_\t_
3-4\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
3\tloudly\tloudly\tADV\t_\t_\t2\tadvmod\t_\t_
4\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_

1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_
"""


def test_conllu_words_heads_relations(tmp_path):
    p = tmp_path / "a.conllu"
    p.write_text(CONLLU, encoding="utf-8")
    recs = read(p)
    assert len(recs) == 2
    w = recs[0].words
    assert w.forms == ("Dogs", "bark", "loudly", ".")
    assert w.heads == (1, -1, 1, 1)
    assert w.deprels == ("nsubj", "root", "advmod", "punct")
    assert recs[1].line == 9


@pytest.mark.parametrize(
    "bad, message",
    [
        ("1\tDogs\tdog\tNOUN\t_\t_\t2\tnsubj\t_\n", r"a\.conllu:1: CoNLL-U token line needs 10"),
        ("1\tDogs\tdog\tNOUN\t_\t_\tX\tnsubj\t_\t_\n", r"a\.conllu:1: ID '1' / HEAD 'X' is not an integer"),
        ("1\tDogs\tdog\tNOUN\t_\t_\t5\tnsubj\t_\t_\n", r"a\.conllu:1: HEAD 5 outside the sentence"),
        ("2\tDogs\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n", r"a\.conllu:1: word ID 2 out of sequence"),
    ],
)
def test_conllu_errors(tmp_path, bad, message):
    p = tmp_path / "a.conllu"
    p.write_text(bad, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read(p)


def test_format_detection():
    assert detect_format("x.tsv.gz", None) == "tsv"
    assert detect_format("-", None) == "text"
    with pytest.raises(InputError, match="give --format"):
        detect_format("x.csv", None)
