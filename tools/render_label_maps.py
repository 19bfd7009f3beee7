"""Rebuild and render the hand-labelled attention-pattern validation sample (``validation/``).

The sample is a pure function of ``--seed`` (default 2019) and the shared data folder
(``$ATTNX_SHARED_DATA``, default ``/work/shared/data``):

* single sentences: ``ud_english_ewt/dev/sentences.txt`` (1-based line numbers);
* sentence pairs: ``glue_qnli_dev/dev.tsv`` (question, sentence); ``line`` is the 1-based physical line
  of the TSV file (the header is line 1, so data row ``index = line - 2``).

Records are drawn with ``numpy.random.default_rng(seed)`` among texts of ``8..40`` wordpieces
([CLS]/[SEP] included, MiniLM tokenizer). Every record contributes ``--maps-per-record`` maps; the
(layer, head) slots are consecutive blocks of seeded permutations of all 6 x 12 = 72 (layer, head)
pairs, drawn separately for singles and pairs, so every head of every layer is covered about equally
and no record repeats a head.  Default: 24 single records + 16 pair records, 6 maps each = 240 maps
(60 % single / 40 % pair), items ``m001``..``m240``.

The texts are written to a temporary TSV, extracted with ``attnx extract`` (the real MiniLM model,
default precision) into a temporary Zarr store, and each map is drawn as one panel of a 3 x 4 grid
per PNG: panel title = item id, layer, head, single/pair, length; rows = queries, columns = keys; colour =
attention on a linear scale from 0 to the panel's maximum (``--gamma`` < 1 brightens weak structure; the
labels were made with the default 1.0); a thin white line marks the segment boundary of pairs.

Usage::

    python tools/render_label_maps.py --out /tmp/labelmaps            # PNGs + sample.csv in /tmp/labelmaps
    python tools/render_label_maps.py --out /tmp/labelmaps --store /tmp/labelmaps/store.zarr
    python tools/render_label_maps.py --sample-only                  # print the sample as CSV

Other code reuses :func:`build_sample`, :func:`extract_sample` and :func:`item_maps`
(``benchmarks/eval_patterns.py`` does).  No sentence text is written outside the temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SEED = 2019
DATA_DIR = Path(os.environ.get("ATTNX_SHARED_DATA", "/work/shared/data"))
SINGLE_SOURCE = "ud_english_ewt/dev/sentences.txt"
PAIR_SOURCE = "glue_qnli_dev/dev.tsv"
N_LAYERS = 6
N_HEADS = 12
LABELS: tuple[str, ...] = ("vertical", "diagonal", "vertical_diagonal", "block", "heterogeneous")
SAMPLE_FIELDS: tuple[str, ...] = ("item", "source", "line", "pair_line_b", "layer", "head")


@dataclass(frozen=True)
class SourceRecord:
    """One input text: a single sentence or a (question, sentence) pair, located by file and line."""

    source: str  # path relative to DATA_DIR
    line: int  # 1-based physical line
    text: str
    text_b: str | None
    n_tokens: int  # wordpieces, specials included


@dataclass(frozen=True)
class Item:
    """One labelled map: ``record`` indexes :attr:`Sample.records` (and the extracted store)."""

    item: str
    record: int
    layer: int
    head: int


@dataclass(frozen=True)
class Sample:
    records: list[SourceRecord]
    items: list[Item]

    def row(self, it: Item) -> dict[str, str | int]:
        """The CSV fields of an item (no text)."""
        rec = self.records[it.record]
        return {"item": it.item, "source": rec.source, "line": rec.line, "pair_line_b": "",
                "layer": it.layer, "head": it.head}


def _tokenizer() -> object:
    from attnx.engine.model import _load_tokenizer, minilm_path

    return _load_tokenizer(minilm_path())


def _single_candidates() -> list[tuple[int, str, None]]:
    lines = (DATA_DIR / SINGLE_SOURCE).read_text(encoding="utf-8").splitlines()
    return [(k + 1, t.strip(), None) for k, t in enumerate(lines) if t.strip()]


def _pair_candidates() -> list[tuple[int, str, str]]:
    lines = (DATA_DIR / PAIR_SOURCE).read_text(encoding="utf-8").splitlines()
    out = []
    for k, raw in enumerate(lines[1:], start=2):  # line 1 is the header
        f = raw.split("\t")
        if len(f) == 4 and f[1].strip() and f[2].strip():
            out.append((k, f[1].strip(), f[2].strip()))
    return out


def _draw(rng: np.random.Generator, cands: list, n: int, source: str, tok: object,
          min_len: int, max_len: int) -> list[SourceRecord]:
    """The first ``n`` candidates in seeded random order whose length is in ``[min_len, max_len]``."""
    chosen: list[SourceRecord] = []
    seen: set[tuple[str, str | None]] = set()
    for k in rng.permutation(len(cands)):
        line, a, b = cands[int(k)]
        if (a, b) in seen:
            continue
        n_tok = len(tok(a, b)["input_ids"] if b is not None else tok(a)["input_ids"])  # type: ignore[operator]
        if min_len <= n_tok <= max_len:
            chosen.append(SourceRecord(source, line, a, b, n_tok))
            seen.add((a, b))
            if len(chosen) == n:
                return chosen
    raise ValueError(f"{source}: only {len(chosen)} texts of {min_len}..{max_len} wordpieces")


def _slots(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """``n`` (layer, head) slots: consecutive seeded permutations of all layer x head pairs."""
    pairs = [(layer, head) for layer in range(N_LAYERS) for head in range(N_HEADS)]
    out: list[tuple[int, int]] = []
    while len(out) < n:
        out.extend(pairs[int(k)] for k in rng.permutation(len(pairs)))
    return out[:n]


def build_sample(seed: int = DEFAULT_SEED, n_single: int = 24, n_pair: int = 16, maps_per_record: int = 6,
                 min_len: int = 8, max_len: int = 40) -> Sample:
    """The labelled sample for ``seed`` (deterministic; see the module docstring)."""
    if (N_LAYERS * N_HEADS) % maps_per_record:
        raise ValueError("maps_per_record must divide 72 so that no record repeats a head")
    rng = np.random.default_rng(seed)
    tok = _tokenizer()
    records = _draw(rng, _single_candidates(), n_single, SINGLE_SOURCE, tok, min_len, max_len)
    records += _draw(rng, _pair_candidates(), n_pair, PAIR_SOURCE, tok, min_len, max_len)
    slots = _slots(rng, n_single * maps_per_record) + _slots(rng, n_pair * maps_per_record)
    items = [Item(f"m{k + 1:03d}", k // maps_per_record, layer, head)
             for k, (layer, head) in enumerate(slots)]
    return Sample(records, items)


def extract_sample(sample: Sample, workdir: str | Path, dtype: str = "float16") -> Path:
    """Write the sample's texts to ``workdir/sample.tsv`` and extract them with ``attnx extract`` (MiniLM).

    Returns the store path ``workdir/sample.zarr`` (reused if it already exists). Record ``k`` of the
    store is ``sample.records[k]``; lengths are checked against the sampling tokenizer.
    """
    import attnx

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store_path = workdir / "sample.zarr"
    if not store_path.exists():
        tsv = workdir / "sample.tsv"
        with tsv.open("w", encoding="utf-8") as f:
            for rec in sample.records:
                f.write(rec.text if rec.text_b is None else f"{rec.text}\t{rec.text_b}")
                f.write("\n")
        cmd = [sys.executable, "-c", "from attnx.cli.main import main; main()", "extract", str(tsv),
               "-o", str(store_path), "-q", "--dtype", dtype, "--device", "cpu"]
        subprocess.run(cmd, check=True)
    store = attnx.open_store(store_path)
    want = np.array([r.n_tokens for r in sample.records])
    if len(store) != len(want) or not np.array_equal(np.asarray(store.lengths), want):
        raise RuntimeError(f"{store_path}: store does not match the sample ({store.lengths} vs {want})")
    return store_path


def item_maps(sample: Sample, store_path: str | Path) -> dict[str, tuple[np.ndarray, int]]:
    """``item -> (map (l, l) float32, len_a)``; ``len_a`` = tokens of segment A (= l for singles)."""
    import attnx

    store = attnx.open_store(store_path)
    cache: dict[int, np.ndarray] = {}
    out: dict[str, tuple[np.ndarray, int]] = {}
    for it in sample.items:
        if it.record not in cache:
            cache[it.record] = store.attention(it.record)
        seg = np.asarray(store.segments(it.record))
        out[it.item] = (cache[it.record][it.layer, it.head], int((seg == 0).sum()))
    return out


def render(sample: Sample, maps: dict[str, tuple[np.ndarray, int]], out_dir: str | Path,
           rows: int = 3, cols: int = 4, gamma: float = 1.0) -> list[Path]:
    """Draw ``rows x cols`` panels per PNG (``page_NN.png`` in ``out_dir``); returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per = rows * cols
    paths = []
    for page in range(0, len(sample.items), per):
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2, rows * 3.3), squeeze=False)
        for ax, it in zip(axes.ravel(), sample.items[page:page + per] + [None] * per, strict=False):
            ax.set_xticks([])
            ax.set_yticks([])
            if it is None:
                ax.axis("off")
                continue
            attn, len_a = maps[it.item]
            l = attn.shape[0]
            norm = PowerNorm(gamma, vmin=0.0, vmax=max(float(attn.max()), 1e-6))
            ax.imshow(attn, cmap="viridis", norm=norm, interpolation="nearest")
            if len_a < l:
                ax.axvline(len_a - 0.5, color="white", lw=0.6)
                ax.axhline(len_a - 0.5, color="white", lw=0.6)
            kind = "pair" if len_a < l else "single"
            ax.set_title(f"{it.item}  L{it.layer}H{it.head}  {kind} l={l}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"page_{page // per + 1:02d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def assign_split(items: list[Item], seed: int = DEFAULT_SEED, tune_fraction: float = 0.4) -> dict[str, str]:
    """Seeded split by item: ``round(tune_fraction * n)`` items -> ``"tune"``, the rest -> ``"test"``."""
    order = np.random.default_rng([seed, 1]).permutation(len(items))
    n_tune = round(tune_fraction * len(items))
    tune = {items[int(k)].item for k in order[:n_tune]}
    return {it.item: "tune" if it.item in tune else "test" for it in items}


def write_sample_csv(sample: Sample, path: str | Path | None) -> None:
    """The sample as CSV (``SAMPLE_FIELDS``) to ``path`` or stdout."""
    f = open(path, "w", newline="", encoding="utf-8") if path else sys.stdout  # noqa: SIM115
    w = csv.DictWriter(f, fieldnames=list(SAMPLE_FIELDS), lineterminator="\n")
    w.writeheader()
    for it in sample.items:
        w.writerow(sample.row(it))
    if path:
        f.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out", default=None, help="folder for PNGs + sample.csv (default: new temp folder)")
    ap.add_argument("--store", default=None, help="work folder for the TSV + store (default: OUT/work)")
    ap.add_argument("--gamma", type=float, default=1.0, help="colour scale exponent (1 = linear)")
    ap.add_argument("--sample-only", action="store_true", help="print the sample as CSV and stop")
    args = ap.parse_args(argv)
    sample = build_sample(args.seed)
    if args.sample_only:
        write_sample_csv(sample, None)
        return
    out = Path(args.out or tempfile.mkdtemp(prefix="attnx_labelmaps_"))
    work = Path(args.store) if args.store else out / "work"
    store = extract_sample(sample, work)
    write_sample_csv(sample, out / "sample.csv")
    for p in render(sample, item_maps(sample, store), out, gamma=args.gamma):
        print(p)


if __name__ == "__main__":
    main()
