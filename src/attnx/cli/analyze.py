"""``attnx analyze``, ``attnx compare``, ``attnx report``: thin wrappers over attnx.analysis / attnx.report."""

from __future__ import annotations

import time
from pathlib import Path

import click

from attnx.errors import AttnxError


def _split(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise click.BadParameter(f"{', '.join(bad) or value!r}: choose {what} from {', '.join(allowed)}")
    return items


class _Progress:
    """tqdm bar over stored attention bytes, with maps/s and MB/s."""

    def __init__(self, total_bytes: int, maps_per_record: int, enabled: bool, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total_bytes / 1e6 + 1e-6, unit="MB", desc=desc, disable=not enabled,
                        dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} MB [{elapsed}<{remaining}{postfix}]")
        self.maps_per_record = maps_per_record
        self.t0 = time.perf_counter()
        self.records = 0

    def __call__(self, records: int, nbytes: int) -> None:
        self.records += records
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(nbytes / 1e6)
        self.bar.set_postfix_str(f"{self.records * self.maps_per_record / dt:,.0f} maps/s, "
                                 f"{self.bar.n / dt:,.0f} MB/s")

    def close(self) -> None:
        self.bar.close()


@click.command("analyze")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: STORE/analysis).")
@click.option("--only", default="features,patterns,similarity,relations", show_default=True,
              help="Comma-separated analyses: features, patterns, similarity, relations (CoNLL-U stores).")
@click.option("--metric", default="cosine,js", show_default=True,
              help="Head-similarity metrics: cosine, js (Jensen-Shannon, base 2).")
@click.option("--sample", type=click.IntRange(min=1), default=None, help="Analyse a seeded random subset of N records.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample and of the JS subset.")
@click.option("--js-records", type=click.IntRange(min=1), default=5000, show_default=True,
              help="JS similarity costs ~20x cosine: use at most this many (seeded) records for it.")
@click.option("--per-record", is_flag=True,
              help="Also write pattern_labels.npy (records x layers x heads, int8) and pattern_probs.npy (float16).")
@click.option("--pattern-model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Pattern-classifier JSON (default: the packaged pattern_model.json).")
@click.option("--block-mb", type=click.IntRange(min=1), default=64, show_default=True,
              help="Stored attention per streamed block (memory is about 4x this).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def analyze(store: Path, output: Path | None, only: str, metric: str, sample: int | None, seed: int,
            js_records: int, per_record: bool, pattern_model: Path | None, block_mb: int, progress: bool) -> None:
    """Features, pattern types, head similarity and relation heads of every map in STORE.

    Streams the store block by block through numba kernels (memory bounded by --block-mb) and writes
    features.csv, patterns.csv, similarity_{cosine,js}.npy, head_clusters_*.csv, relations.csv (CoNLL-U
    stores), partial.npz (mergeable sums) and params.json.

    Example: attnx analyze corpus.zarr --only patterns,similarity --metric js --sample 100000
    """
    import attnx
    from attnx.analysis import ANALYSES, AnalyzeParams, analyze_store, write_results
    from attnx.kernels.pattern_model import PatternModel
    from attnx.kernels.similarity import METRICS

    only_t = _split(only, ANALYSES, "analyses")
    metrics = _split(metric, METRICS, "metrics")
    try:
        st = attnx.open_store(store)
        out = output or store / "analysis"
        out.mkdir(parents=True, exist_ok=True)
        params = AnalyzeParams(only=only_t, metrics=metrics, sample=sample, seed=seed, js_records=js_records,
                               max_bytes=block_mb << 20, per_record=per_record,
                               pattern_model=str(pattern_model) if pattern_model else None)
        PatternModel.load(params.pattern_model)  # a bad file fails here, before any work
        n = min(sample or len(st), len(st))
        itemsize = {"float16": 2, "float32": 4, "uint8": 1}[st.dtype]
        total = st.commit.attn * itemsize * n // max(len(st), 1)
        bar = _Progress(total, st.n_layers * st.n_heads, progress, "analyze")
        t0 = time.perf_counter()
        try:
            part = analyze_store(st, params, labels_path=out / "pattern_labels.npy" if per_record else None,
                                 progress=bar)
        finally:
            bar.close()
        files = write_results(part, out, st, params, elapsed_s=time.perf_counter() - t0)
    except AttnxError as exc:
        raise click.ClickException(str(exc)) from exc
    note = ""
    if getattr(st, "payload", "maps") == "features" and set(only_t) - {"features", "patterns"}:
        note = " (a --stats-only store: features and patterns only; similarity and relations need the maps)"
    click.echo(f"analysed {part.records} records ({part.attn_bytes / 1e6:.1f} MB of attention) "
               f"in {time.perf_counter() - t0:.1f} s -> {out} ({len(files)} files){note}")


@click.command("compare")
@click.argument("store_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("store_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder for compare.csv (default: STORE_A/analysis).")
@click.option("--block-mb", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def compare(store_a: Path, store_b: Path, output: Path | None, block_mb: int, progress: bool) -> None:
    """Per-head cosine similarity and max |difference| of the same records' maps in two stores.

    The stores must hold the same records, tokenized the same way (e.g. pre-trained vs fine-tuned, or
    float16 vs float32 extraction of one corpus); otherwise it refuses and says why.

    Example: attnx compare pretrained.zarr finetuned.zarr -o cmp/
    """
    import attnx
    from attnx.analysis import compare_stores, write_compare

    try:
        a = attnx.open_store(store_a)
        itemsize = {"float16": 2, "float32": 4, "uint8": 1}[a.dtype]
        bar = _Progress(a.commit.attn * itemsize, a.n_layers * a.n_heads, progress, "compare")
        try:
            result = compare_stores(store_a, store_b, max_bytes=block_mb << 20, progress=bar)
        finally:
            bar.close()
        out = output or store_a / "analysis"
        write_compare(result, out, store_a, store_b)
    except AttnxError as exc:
        raise click.ClickException(str(exc)) from exc
    cos = result["cosine"]
    click.echo(f"{result['records']} records; mean cosine {cos.mean():.4f} (min {cos.min():.4f} at layer "
               f"{result['layers'][int(cos.argmin()) // cos.shape[1]]}, head "
               f"{result['heads'][int(cos.argmin()) % cos.shape[1]]}); max |diff| {result['max_abs_diff'].max():.4g}"
               f" -> {out / 'compare.csv'}")


@click.command("report")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the PNG figures and CSV tables.")
def report(source: Path, output: Path) -> None:
    """Figures (PNG) and tables (CSV) of everything analysed in SOURCE (a store or an analysis folder).

    Example: attnx report corpus.zarr -o report/
    """
    from attnx.report import make_report

    analysis = source / "analysis" if (source / "analysis").is_dir() else source
    try:
        paths = make_report(analysis, output)
    except AttnxError as exc:
        raise click.ClickException(str(exc)) from exc
    n_png = sum(p.suffix == ".png" for p in paths)
    click.echo(f"{n_png} figures and {len(paths) - n_png} tables -> {output}")
