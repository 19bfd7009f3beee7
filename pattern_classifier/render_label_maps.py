"""Rebuild and render the hand-labelled attention-pattern validation sample (``validation/``).

Longer than most files: the sample's whole definition (sources, strata, seeds, rendering) is kept in one place so
that the labelled sets can be rebuilt exactly from it.

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

    python pattern_classifier/render_label_maps.py --out /tmp/labelmaps            # PNGs + sample.csv in /tmp/labelmaps
    python pattern_classifier/render_label_maps.py --out /tmp/labelmaps --store /tmp/labelmaps/store.zarr
    python pattern_classifier/render_label_maps.py --sample-only                  # print the sample as CSV

Other code reuses :func:`build_sample`, :func:`extract_sample` and :func:`item_maps`
(``pattern_classifier/eval_patterns.py`` does).  No sentence text is written outside the temporary folder.
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


def extract_sample(sample: Sample, workdir: str | Path, dtype: str = "float16", backend: str = "auto") -> Path:
    """Write the sample's texts to ``workdir/sample.tsv`` and extract them with ``attnx extract`` (MiniLM) on
    ``backend`` (``attnx extract --backend``).

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
               "-o", str(store_path), "-q", "--dtype", dtype, "--device", "cpu", "--backend", backend]
        subprocess.run(cmd, check=True)
    store = attnx.open_store(store_path)
    recorded = store.attrs.get("options", {}).get("backend")
    if backend != "auto" and recorded != backend:  # a store left in the work folder by another backend
        made_with = f"the {recorded}" if recorded else "an unrecorded"
        raise SystemExit(f"{store_path}: extracted with {made_with} backend, this sample needs {backend} "
                         "(remove it or use another work folder)")
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


# --------------------------------------------------------------------------------------------------------
# The larger two-labeller sample (issue 10): ``validation/pattern_sample_v2.csv``, items ``n0001``..
# --------------------------------------------------------------------------------------------------------

V2_SEED = 2026
V2_SINGLE_SOURCES: tuple[str, ...] = ("ud_english_ewt/dev/sentences.txt", "ud_english_gum/dev/sentences.txt")
V2_PAIR_SOURCES: tuple[str, ...] = ("glue_qnli_dev/dev.tsv", "glue_rte_dev/dev.tsv")
V2_LENGTH_BINS: tuple[tuple[int, int], ...] = ((8, 20), (21, 40), (41, 60), (61, 80))  # singles
V2_PAIR_BINS: tuple[tuple[int, int], ...] = ((10, 32), (33, 48), (49, 64), (65, 80))  # pairs are longer
V2_FIELDS: tuple[str, ...] = ("item", "stratum", "source", "line", "layer", "head", "length", "len_a", "page")


def _v2_candidates(source: str) -> list[tuple[int, str, str | None]]:
    """``(1-based physical line, text, text_b)`` of a source (RTE is read with CSV quoting)."""
    if source.endswith("sentences.txt"):
        lines = (DATA_DIR / source).read_text(encoding="utf-8").splitlines()
        return [(k + 1, t.strip(), None) for k, t in enumerate(lines) if t.strip()]
    if source == PAIR_SOURCE:
        return _pair_candidates()
    out: list[tuple[int, str, str | None]] = []
    with (DATA_DIR / source).open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        for row in reader:
            if len(row) == 4 and row[0].strip() and row[1].strip():
                out.append((reader.line_num, row[0].strip(), row[1].strip()))
    return out


def _v2_draw(rng: np.random.Generator, source: str, per_bin: int, tok: object,
             exclude: set[tuple[str, int]]) -> list[SourceRecord]:
    """``per_bin`` records of ``source`` in each length bin (:data:`V2_LENGTH_BINS` for singles,
    :data:`V2_PAIR_BINS` for pairs), in seeded random order; ``exclude`` (source, line) is updated."""
    cands = _v2_candidates(source)
    bins = V2_PAIR_BINS if source in V2_PAIR_SOURCES else V2_LENGTH_BINS
    need = {b: per_bin for b in bins}
    chosen: list[SourceRecord] = []
    seen: set[tuple[str, str | None]] = set()
    for k in rng.permutation(len(cands)):
        line, a, b = cands[int(k)]
        if (a, b) in seen or (source, line) in exclude:
            continue
        n_tok = len(tok(a, b)["input_ids"] if b is not None else tok(a)["input_ids"])  # type: ignore[operator]
        for lo, hi in bins:
            if lo <= n_tok <= hi and need[(lo, hi)] > 0:
                need[(lo, hi)] -= 1
                chosen.append(SourceRecord(source, line, a, b, n_tok))
                seen.add((a, b))
                exclude.add((source, line))
        if not any(need.values()):
            return chosen
    short = {f"{lo}-{hi}": n for (lo, hi), n in need.items() if n}
    raise ValueError(f"{source}: not enough texts in length bins {short}")


@dataclass(frozen=True)
class SampleV2:
    """Records (random singles, random pairs, block-candidate pool pairs) and the drawn items."""

    records: list[SourceRecord]
    n_random: int  # records[:n_random] are the random records; the rest are the block-candidate pool
    items: list[Item]
    stratum: dict[str, str]  # item -> "random" | "block_candidate"


def build_records_v2(seed: int = V2_SEED, singles_per_bin: int = 5, pairs_per_bin: int = 3,
                     pool_pairs_per_bin: int = 12) -> tuple[list[SourceRecord], int]:
    """Random records (singles from EWT + GUM, pairs from QNLI + RTE, equal per length bin) + a pool of
    other pair records from which block candidates are drawn. Returns ``(records, n_random)``."""
    rng = np.random.default_rng(seed)
    tok = _tokenizer()
    used: set[tuple[str, int]] = set()
    records: list[SourceRecord] = []
    for src in V2_SINGLE_SOURCES:
        records += _v2_draw(rng, src, singles_per_bin, tok, used)
    for src in V2_PAIR_SOURCES:
        records += _v2_draw(rng, src, pairs_per_bin, tok, used)
    n_random = len(records)
    for src in V2_PAIR_SOURCES:
        records += _v2_draw(rng, src, pool_pairs_per_bin, tok, used)
    return records, n_random


def block_likeness(attn: np.ndarray, len_a: int) -> float:
    """How block-like a pair map looks: ``(attn (l, l), len_a) -> float`` (higher = more block-like).

    Columns 0, ``len_a - 1`` and ``l - 1`` ([CLS], [SEP]s) are dropped and rows renormalised; then
    ``band`` = mean row mass within 2 tokens of the diagonal, ``stripe`` = mean share of the most-attended
    remaining column, ``own`` = own-segment share of the mass *outside* the band, chance-corrected by the
    own-segment share of those keys under uniform attention. Score = ``own - band - stripe``: spread
    within the own segment, not a diagonal, not a column. Used only to *choose* candidate maps; never
    shown to labellers.
    """
    l = attn.shape[0]
    keep = np.ones(l, bool)
    keep[[0, len_a - 1, l - 1]] = False
    p = attn[:, keep].astype(np.float64)
    p /= np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    q_idx = np.arange(l)[:, None]
    k_idx = np.arange(l)[keep][None, :]
    near = np.abs(q_idx - k_idx) <= 2
    band = float((p * near).sum(axis=1).mean())
    stripe = float(p.mean(axis=0).max())
    same = (q_idx >= len_a) == (k_idx >= len_a)
    off = np.where(near, 0.0, p)
    off_mass = np.maximum(off.sum(axis=1), 1e-12)
    own = (off * same).sum(axis=1) / off_mass
    chance = (same & ~near).sum(axis=1) / np.maximum((~near).sum(axis=1), 1)
    own_c = float(np.mean((own - chance) / np.maximum(1.0 - chance, 1e-9)))
    return own_c - band - stripe


def build_sample_v2(store_path: str | Path, records: list[SourceRecord], n_random: int,
                    seed: int = V2_SEED, maps_per_record: int = 12, n_block: int = 240,
                    per_record_cap: int = 4, per_head_cap: int = 8) -> SampleV2:
    """Items: every random record gets ``maps_per_record`` heads (consecutive seeded permutations of all 72,
    separately for singles and pairs); then ``n_block`` block candidates from the pool (greedy by
    :func:`block_likeness`, at most ``per_record_cap`` per record and ``per_head_cap`` per (layer, head)).
    Items are shuffled (seeded) and numbered ``n0001``.. in page order, so ids reveal no stratum."""
    import attnx

    rng = np.random.default_rng([seed, 2])
    store = attnx.open_store(store_path)
    n_single = sum(r.text_b is None for r in records[:n_random])
    drawn: list[tuple[int, int, int, str]] = []  # (record, layer, head, stratum)
    for group in (range(n_single), range(n_single, n_random)):
        slots = _slots(rng, len(group) * maps_per_record)
        for k, (layer, head) in enumerate(slots):
            drawn.append((group[k // maps_per_record], layer, head, "random"))
    scored: list[tuple[float, int, int, int]] = []
    for r in range(n_random, len(records)):
        attn = store.attention(r)
        la = int((np.asarray(store.segments(r)) == 0).sum())
        for layer in range(N_LAYERS):
            for head in range(N_HEADS):
                scored.append((block_likeness(attn[layer, head], la), r, layer, head))
    scored.sort(key=lambda t: -t[0])
    per_rec: dict[int, int] = {}
    per_head: dict[tuple[int, int], int] = {}
    for _, r, layer, head in scored:
        if sum(s == "block_candidate" for *_, s in drawn) >= n_block:
            break
        if per_rec.get(r, 0) >= per_record_cap or per_head.get((layer, head), 0) >= per_head_cap:
            continue
        per_rec[r] = per_rec.get(r, 0) + 1
        per_head[(layer, head)] = per_head.get((layer, head), 0) + 1
        drawn.append((r, layer, head, "block_candidate"))
    order = rng.permutation(len(drawn))
    items: list[Item] = []
    stratum: dict[str, str] = {}
    for n, k in enumerate(order):
        r, layer, head, s = drawn[int(k)]
        name = f"n{n + 1:04d}"
        items.append(Item(name, r, layer, head))
        stratum[name] = s
    return SampleV2(records, n_random, items, stratum)


def render_blind(items: list[Item], maps: dict[str, tuple[np.ndarray, int]], out_dir: str | Path,
                 rows: int = 3, cols: int = 4, dpi: int = 100) -> dict[str, str]:
    """Like :func:`render` but the panel title is only ``item  single|pair  l=N`` (no layer/head, no score).

    PNGs ``sheet_NNN.png``; returns ``item -> PNG file name``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per = rows * cols
    where: dict[str, str] = {}
    for page in range(0, len(items), per):
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2, rows * 3.3), squeeze=False)
        name = f"sheet_{page // per + 1:03d}.png"
        for ax, it in zip(axes.ravel(), items[page:page + per] + [None] * per, strict=False):
            ax.set_xticks([])
            ax.set_yticks([])
            if it is None:
                ax.axis("off")
                continue
            attn, len_a = maps[it.item]
            l = attn.shape[0]
            ax.imshow(attn, cmap="viridis", vmin=0.0, vmax=max(float(attn.max()), 1e-6), interpolation="nearest")
            if len_a < l:
                ax.axvline(len_a - 0.5, color="white", lw=0.6)
                ax.axhline(len_a - 0.5, color="white", lw=0.6)
            kind = "pair" if len_a < l else "single"
            ax.set_title(f"{it.item}  {kind}  l={l}", fontsize=10)
            where[it.item] = name
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=dpi)
        plt.close(fig)
    return where


def run_v2(render_dir: str | Path, sample_csv: str | Path, work: str | Path, seed: int = V2_SEED) -> None:
    """Draw the v2 sample, render it blind to ``render_dir`` (+ ``items.csv``: item, png) and write the full
    sample (with layer, head, stratum; no text) to ``sample_csv``."""
    records, n_random = build_records_v2(seed)
    store = extract_sample(Sample(records, []), work)
    sample = build_sample_v2(store, records, n_random, seed)
    maps = item_maps(Sample(records, sample.items), store)
    where = render_blind(sample.items, maps, render_dir)
    write_manifest(sample.items, where, render_dir)
    write_sample_key(sample_csv, sample.items, records, sample.stratum, maps, where)


def write_manifest(items: list[Item], where: dict[str, str], render_dir: str | Path) -> None:
    """``render_dir/items.csv`` (item, png): what the labellers get beside the blind sheets."""
    with open(Path(render_dir) / "items.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["item", "png"])
        for it in items:
            w.writerow([it.item, where[it.item]])


def write_sample_key(path: str | Path, items: list[Item], records: list[SourceRecord], stratum: dict[str, str],
                     maps: dict[str, tuple[np.ndarray, int]], where: dict[str, str]) -> None:
    """The sample's key (:data:`V2_FIELDS`: stratum, source, line, layer, head, lengths, page; no text)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(V2_FIELDS), lineterminator="\n")
        w.writeheader()
        for it in items:
            rec = records[it.record]
            w.writerow({"item": it.item, "stratum": stratum[it.item], "source": rec.source, "line": rec.line,
                        "layer": it.layer, "head": it.head, "length": rec.n_tokens, "len_a": maps[it.item][1],
                        "page": where[it.item]})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out", default=None, help="folder for PNGs + sample.csv (default: new temp folder)")
    ap.add_argument("--store", default=None, help="work folder for the TSV + store (default: OUT/work)")
    ap.add_argument("--gamma", type=float, default=1.0, help="colour scale exponent (1 = linear)")
    ap.add_argument("--sample-only", action="store_true", help="print the sample as CSV and stop")
    ap.add_argument("--v2", action="store_true",
                    help="the larger blind sample (issue 10): PNGs + items.csv to --out, full sample to --sample-csv")
    ap.add_argument("--sample-csv", default="validation/pattern_sample_v2.csv")
    args = ap.parse_args(argv)
    if args.v2:
        out = Path(args.out or tempfile.mkdtemp(prefix="attnx_labelmaps_v2_"))
        run_v2(out, args.sample_csv, Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="attnx_v2_")),
               args.seed if args.seed != DEFAULT_SEED else V2_SEED)
        return
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
