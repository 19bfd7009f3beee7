"""``attnx analyze``, ``attnx compare``, ``attnx report``: thin wrappers over attnx.analysis / attnx.report."""

from __future__ import annotations

import time
from pathlib import Path

import click

from attnx.cli.options import echo_warnings
from attnx.config import BLOCK_BYTES
from attnx.errors import AttnxError
from attnx.outputs import output_dir
from attnx.store.layout import STORED_DTYPES


def analysis_dir(store: Path) -> Path:
    """Where results of a store go by default: beside it (``corpus.zarr`` -> ``corpus.zarr.analysis``), never
    inside the store's repository, whose size and objects then stay the store's own."""
    return store.with_name(store.name + ".analysis")



def _split(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise click.BadParameter(f"{', '.join(bad) or value!r}: choose {what} from {', '.join(allowed)}")
    return items


class _Progress:
    """The analyze / compare bar over stored attention MB, with maps/s and MB/s since the stream started."""

    def __init__(self, total_bytes: int, maps_per_record: int, enabled: bool, desc: str) -> None:
        from attnx.cli.progress import RateBar, per_s

        rates = {"maps": per_s("maps", fmt=",.0f"), "mb": per_s("MB", fmt=",.1f")}
        self.bar = RateBar(enabled, round(total_bytes / 1e6, 1), "MB", desc, rates)
        self.maps_per_record = maps_per_record
        self.records = 0
        self.mb = 0.0

    def start(self) -> None:
        self.bar.start()

    def __call__(self, records: int, nbytes: int) -> None:
        self.records += records
        self.mb += nbytes / 1e6
        self.bar.update(round(self.mb, 1), maps=self.records * self.maps_per_record, mb=self.mb)

    def finish(self, seconds: float) -> str:
        """Final rates over ``seconds`` (the summary's); returns the rates text."""
        return self.bar.finish(round(self.mb, 1), seconds, maps=self.records * self.maps_per_record, mb=self.mb)

    def close(self) -> None:
        self.bar.close()


@click.command("analyze")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: STORE.analysis beside the store).")
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
@click.option("--block-mb", type=click.IntRange(min=1), default=BLOCK_BYTES >> 20, show_default=True,
              help="Stored attention per streamed block (memory is about 4x this).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option("--workers", default=None, help="Run on a local Dask cluster of N worker processes (dask extra).")
@click.option("--threads-per-worker", type=int, default=0, help="Kernel threads per local worker [default: cores/N].")
@click.option("--scheduler", default=None, help="Run on an existing Dask cluster: its scheduler's address.")
def analyze(store: Path, output: Path | None, only: str, metric: str, sample: int | None, seed: int,
            js_records: int, per_record: bool, pattern_model: Path | None, block_mb: int, progress: bool,
            workers: str | None, threads_per_worker: int, scheduler: str | None) -> None:
    """Features, pattern types, head similarity and relation heads of every map in STORE.

    Streams the store block by block through numba kernels (memory bounded by --block-mb) and writes
    features.csv, patterns.csv, similarity_{cosine,js}.npy, head_clusters_*.csv, relations.csv (CoNLL-U
    stores), partial.npz (mergeable sums) and params.json.

    Example: attnx analyze corpus.zarr --only patterns,similarity --metric js --sample 100000
    """
    import attnx
    from attnx.analysis import ANALYSES, AnalyzeParams, analyze_store, write_results
    from attnx.kernels.similarity import METRICS

    only_t = _split(only, ANALYSES, "analyses")
    metrics = _split(metric, METRICS, "metrics")
    try:
        with echo_warnings():
            st = attnx.open_store(store)
            out = output_dir(output or analysis_dir(store), default=output is None)
            params = AnalyzeParams(only=only_t, metrics=metrics, sample=sample, seed=seed, js_records=js_records,
                                   max_bytes=block_mb << 20, per_record=per_record,
                                   pattern_model=str(pattern_model) if pattern_model else None)
            n = min(sample or len(st), len(st))
            itemsize = STORED_DTYPES[st.dtype].storage.itemsize
            total = st.commit.attn * itemsize * n // max(len(st), 1)
            bar = _Progress(total, st.n_layers * st.n_heads, progress, "analyze")
            try:
                bar.start()
                t0 = time.perf_counter()
                labels_path = out / "pattern_labels.npy" if per_record else None
                part = analyze_store(st, params, labels_path=labels_path, progress=bar, workers=workers,
                                     scheduler=scheduler, threads_per_worker=threads_per_worker,
                                     announce=lambda line: click.echo(line, err=True))
                seconds = time.perf_counter() - t0
                rates = bar.finish(seconds)
            finally:
                bar.close()
            files = write_results(part, out, st, params, elapsed_s=seconds)
    except AttnxError as exc:
        raise click.ClickException(str(exc)) from exc
    note = ""
    if getattr(st, "payload", "maps") == "features" and set(only_t) - {"features", "patterns"}:
        note = " (a --stats-only store: features and patterns only; similarity and relations need the maps)"
    click.echo(f"analysed {part.records} records ({part.attn_bytes / 1e6:.1f} MB of attention) "
               f"in {seconds:.1f} s ({rates}) -> {out} ({len(files)} files){note}")


@click.command("compare")
@click.argument("store_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("store_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder for compare.csv (default: STORE_A.analysis beside it).")
@click.option("--block-mb", type=click.IntRange(min=1), default=BLOCK_BYTES >> 20, show_default=True)
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
        itemsize = STORED_DTYPES[a.dtype].storage.itemsize
        bar = _Progress(a.commit.attn * itemsize, a.n_layers * a.n_heads, progress, "compare")
        try:
            bar.start()
            t0 = time.perf_counter()
            result = compare_stores(store_a, store_b, max_bytes=block_mb << 20, progress=bar)
            bar.finish(time.perf_counter() - t0)
        finally:
            bar.close()
        out = output_dir(output or analysis_dir(store_a), default=output is None)
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

    analysis = analysis_dir(source) if analysis_dir(source).is_dir() else source
    try:
        paths = make_report(analysis, output)
    except AttnxError as exc:
        raise click.ClickException(str(exc)) from exc
    n_png = sum(p.suffix == ".png" for p in paths)
    click.echo(f"{n_png} figures and {len(paths) - n_png} tables -> {output}")
