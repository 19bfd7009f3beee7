"""Labelled examples for ablation: GLUE-style TSV (single sentences or pairs) and JSONL.

GLUE's TSV files start with a header row naming the columns (``sentence\\tlabel`` for SST-2,
``index\\tquestion\\tsentence\\tlabel`` for QNLI, ``#1 String``/``#2 String``/``Quality`` for MRPC, ...)
and are not quoted; Hugging Face ``datasets`` exports use CSV-style quoting. Both are read: the
quoting is detected (``quoting="auto"``, see :func:`_read_rows`): a plain file is read line by line exactly as
``attnx extract`` reads it. Files without a header (CoLA) need ``header=False`` and
explicit column numbers.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnx.errors import AttnxError, InputError

# column names GLUE / HF files use, first match wins
TEXT_A_NAMES = ("sentence1", "question1", "question", "premise", "#1 String", "text_a", "sentence", "text")
TEXT_B_NAMES = ("sentence2", "question2", "sentence", "hypothesis", "#2 String", "text_b")
LABEL_NAMES = ("label", "gold_label", "Quality", "score")


@dataclass(frozen=True)
class LabelledData:
    """Examples in file order. ``lines``: 1-based source line of each example, int64 ``(n,)``."""

    path: str
    text_a: list[str]
    text_b: list[str] | None  # None for single sentences
    labels: list[str]  # raw label strings, as written
    lines: np.ndarray  # int64 (n,)

    def __len__(self) -> int:
        return len(self.text_a)

    def subset(self, index: np.ndarray) -> LabelledData:
        idx = [int(i) for i in index]
        return LabelledData(
            path=self.path,
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            lines=self.lines[idx],
        )


def _pick(
    header: list[str], given: str | int | None, names: tuple[str, ...], exclude: set[int]
) -> int | None:
    if given is not None:
        if isinstance(given, int) or str(given).isdigit():
            return int(given)
        if given not in header:
            return -1
        return header.index(given)
    for name in names:
        if name in header and header.index(name) not in exclude:
            return header.index(name)
    return None


_QUOTED_FIELD = re.compile(r'^"(?:[^"]|"")*"$')  # a CSV-quoted field: quotes around, inner quotes doubled


def _read_rows(path: Path, quoting: str) -> list[tuple[int, list[str]]]:
    """(1-based line, fields) per non-empty row.

    ``auto`` reads the file as ``attnx extract`` does (one row per line, split at tabs) unless the file itself
    says it is CSV-quoted: every field that starts with ``"`` is a quoted field (``"..."`` with inner quotes doubled,
    as pandas and Hugging Face exports write them), or plain splitting gives rows of different widths that CSV
    quoting makes equal (quoted fields spanning lines). A GLUE sentence that merely starts with a quote
    (``"Yes," she said.``) therefore stays as written: reading such a file as CSV ran rows together.
    """
    with open(path, encoding="utf-8", newline="") as fh:
        text = fh.read()
    raw = text.splitlines()
    plain = [(i + 1, line.split("\t")) for i, line in enumerate(raw) if line.strip()]
    if quoting == "none":
        return plain
    with_quotes = [f for _, fields in plain for f in fields if f.startswith('"')]  # CSV reads only these specially
    if quoting == "auto" and not with_quotes:
        return plain
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(text.splitlines(keepends=True), delimiter="\t", quotechar='"')
    start = 1
    for fields in reader:
        if any(f.strip() for f in fields):
            rows.append((start, fields))
        start = reader.line_num + 1
    if quoting == "auto":
        if all(_QUOTED_FIELD.match(f.rstrip("\r")) for f in with_quotes):
            return rows if len(rows) == len(plain) else plain  # one row per line, as the file's lines say
        plain_widths = {len(f) for _, f in plain}
        if len(plain_widths) > 1 and len({len(f) for _, f in rows}) == 1:
            return rows  # quoted fields spanning lines
        return plain
    return rows


def read_tsv(
    path: str | Path,
    text_cols: tuple[str | int, ...] | None = None,
    label_col: str | int | None = None,
    header: bool = True,
    quoting: str = "auto",
) -> LabelledData:
    """Read a GLUE-style TSV; ``text_cols`` (one or two) and ``label_col`` are names or 0-based numbers."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), None, "data file not found")
    rows = _read_rows(path, quoting)
    if not rows:
        raise InputError(str(path), None, "no rows")
    if header:
        head_line, head = rows[0]
        head = [h.strip() for h in head]
        rows = rows[1:]
    else:
        head_line, head = 0, []
    used: set[int] = set()
    if text_cols:
        cols = [_pick(head, c, (), set()) for c in text_cols]
        for c, given in zip(cols, text_cols, strict=True):
            if c is None or c < 0:
                raise InputError(str(path), head_line or None, f"no text column {given!r} in header {head}")
    else:
        if not header:
            raise InputError(str(path), None, "a file without header needs explicit text and label columns")
        a = _pick(head, None, TEXT_A_NAMES, set())
        if a is None:
            raise InputError(
                str(path), head_line, f"no text column in header {head} (name one with --text-col)"
            )
        b = _pick(head, None, TEXT_B_NAMES, {a})
        cols = [a] if b is None else [a, b]
    used.update(cols)
    lab = _pick(head, label_col, LABEL_NAMES, used)
    if lab is None or lab < 0:
        raise InputError(
            str(path),
            head_line or None,
            f"labels missing: no label column in header {head} (use --label-col)",
        )
    text_a: list[str] = []
    text_b: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    need = max([*cols, lab]) + 1
    for line, fields in rows:
        if len(fields) < need:
            raise InputError(str(path), line, f"{len(fields)} tab-separated fields, expected at least {need}")
        label = fields[lab].strip()
        if not label:
            raise InputError(str(path), line, "label missing (empty label field)")
        text_a.append(fields[cols[0]].strip())
        if len(cols) > 1:
            text_b.append(fields[cols[1]].strip())
        labels.append(label)
        lines.append(line)
    return LabelledData(
        str(path), text_a, text_b if len(cols) > 1 else None, labels, np.asarray(lines, np.int64)
    )


def read_jsonl(
    path: str | Path, text_cols: tuple[str, ...] | None = None, label_col: str | None = None
) -> LabelledData:
    """Read JSON Lines objects; text fields and label found by GLUE names unless given."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), None, "data file not found")
    text_a: list[str] = []
    text_b: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    pair: bool | None = None
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InputError(str(path), number, f"not valid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise InputError(str(path), number, "expected a JSON object per line")
            keys = list(obj)
            if text_cols:
                cols = list(text_cols)
            else:
                a = next((k for k in TEXT_A_NAMES if k in obj), None)
                b = next((k for k in TEXT_B_NAMES if k in obj and k != a), None)
                cols = [c for c in (a, b) if c is not None]
            if not cols or any(c not in obj for c in cols):
                raise InputError(str(path), number, f"no text field among {keys}")
            lab = label_col or next((k for k in LABEL_NAMES if k in obj), None)
            if lab is None or lab not in obj or obj[lab] is None or str(obj[lab]).strip() == "":
                raise InputError(str(path), number, "label missing")
            if pair is None:
                pair = len(cols) > 1
            elif pair != (len(cols) > 1):
                raise InputError(str(path), number, "mixes single sentences and pairs")
            text_a.append(str(obj[cols[0]]).strip())
            if pair:
                text_b.append(str(obj[cols[1]]).strip())
            labels.append(str(obj[lab]).strip())
            lines.append(number)
    if not text_a:
        raise InputError(str(path), None, "no examples")
    return LabelledData(str(path), text_a, text_b if pair else None, labels, np.asarray(lines, np.int64))


def read_labelled(
    path: str | Path,
    text_cols: tuple[str | int, ...] | None = None,
    label_col: str | int | None = None,
    header: bool = True,
    quoting: str = "auto",
) -> LabelledData:
    """TSV (``.tsv``/``.txt``/other) or JSONL (``.jsonl``/``.json``) by extension."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(
            path,
            tuple(str(c) for c in text_cols) if text_cols else None,
            None if label_col is None else str(label_col),
        )
    return read_tsv(path, text_cols, label_col, header, quoting)


@dataclass(frozen=True)
class Targets:
    """Parsed labels. ``y``: int64 class ids ``(n,)`` or float64 values for regression."""

    y: np.ndarray
    task: str  # "classification" | "regression"
    classes: list[str]  # class names in id order ([] for regression)


def _is_float(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def parse_labels(
    data: LabelledData,
    task: str = "auto",
    label2id: dict[str, int] | None = None,
    num_labels: int | None = None,
) -> Targets:
    """Map raw label strings to targets.

    ``label2id``/``num_labels``: a classifier's labels; label strings are matched by name, else read as
    integer ids in ``[0, num_labels)``. Without them (a probe) classes are the sorted distinct labels
    (numerically sorted when all are integers). ``task="auto"``: regression when every label is a
    number and some are not integers, else classification.
    """
    labels = data.labels
    if task == "auto":
        if num_labels == 1:
            task = "regression"
        elif all(_is_float(s) for s in labels) and any(float(s) != int(float(s)) for s in labels):
            task = "regression" if label2id is None else "classification"
        else:
            task = "classification"
    if task == "regression":
        y = np.empty(len(labels), np.float64)
        for i, s in enumerate(labels):
            if not _is_float(s):
                raise InputError(
                    data.path, int(data.lines[i]), f"label {s!r} is not a number (regression task)"
                )
            y[i] = float(s)
        return Targets(y, "regression", [])
    if task != "classification":
        raise ValueError(f"unknown task {task!r}")
    if label2id is not None and num_labels is not None:
        names = {str(k): int(v) for k, v in label2id.items()}
        classes = [str(i) for i in range(num_labels)]
        for k, v in names.items():
            if 0 <= v < num_labels:
                classes[v] = k
        y = np.empty(len(labels), np.int64)
        for i, s in enumerate(labels):
            if s in names:
                y[i] = names[s]
            elif s.lstrip("-").isdigit() and 0 <= int(s) < num_labels:
                y[i] = int(s)
            else:
                raise InputError(
                    data.path,
                    int(data.lines[i]),
                    f"unknown label value {s!r} (the model knows {sorted(names)} or ids 0..{num_labels - 1})",
                )
        return Targets(y, "classification", classes)
    distinct = sorted(set(labels))
    if all(s.lstrip("-").isdigit() for s in distinct):
        distinct = sorted(distinct, key=int)
    if len(distinct) < 2:
        raise InputError(data.path, None, f"only one label value ({distinct}): nothing to classify")
    index = {s: i for i, s in enumerate(distinct)}
    return Targets(np.asarray([index[s] for s in labels], np.int64), "classification", distinct)


def check_train_frac(train_frac: float) -> None:
    """``--train-frac``: the share of examples that trains the probe or the pooling, strictly between 0 and 1."""
    if not 0.0 < train_frac < 1.0:
        raise AttnxError(f"--train-frac {train_frac}: must be between 0 and 1")


def split_indices(n: int, train_frac: float, seed: int, path: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into sorted (train, eval) index arrays, int64."""
    check_train_frac(train_frac)
    n_train = int(round(n * train_frac))
    if n_train < 2 or n - n_train < 2:
        raise InputError(
            path,
            None,
            f"{n} examples are too few to split {train_frac:.0%}/{1 - train_frac:.0%} "
            "(need >= 2 on each side)",
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_train]).astype(np.int64), np.sort(perm[n_train:]).astype(np.int64)
