"""``attnx extract``, ``attnx info``, ``attnx show``: thin wrappers over the engine and the store."""

from __future__ import annotations

import json

import click

from attnx.cli.options import device_option, model_option, one_line_errors, quiet_json_options
from attnx.errors import AttnxError
from attnx.store.layout import CODEC_CHOICES
from attnx.stored_dtypes import DTYPES


class _Progress:
    """The extract bar: sentences done, with sent/s, tokens/s and MB/s of attention since the run started."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        from attnx.cli.progress import RateBar, per_s

        rates = {"records": per_s("sent"), "tokens": per_s("tok", fmt=",.0f"), "nbytes": per_s("MB", 1e6)}
        self.bar = RateBar(enabled, total, "sent", "extract", rates)

    def __call__(self, records: int, tokens: int, nbytes: int) -> None:
        # extract calls (0, 0, 0) when its clock starts, then this run's totals after each batch
        self.bar.update(records, records=records, tokens=tokens, nbytes=nbytes)

    def finish(self, summary: object) -> str:
        """The summary's own numbers on the bar's last line; returns that rates text."""
        return self.bar.finish(
            summary.records_this_run,
            summary.seconds,
            records=summary.records_this_run,
            tokens=summary.tokens_this_run,
            nbytes=summary.attention_bytes,
        )

    def close(self) -> None:
        self.bar.close()


def _count_lines(path: str) -> int | None:
    """Line count of an uncompressed file for the progress bar's total (None for stdin, gzip, CoNLL-U)."""
    if path == "-" or path.endswith(".gz") or path.endswith(".conllu"):
        return None
    try:
        with open(path, "rb") as fh:
            return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b""))
    except OSError:
        return None


@click.command("extract")
@click.argument("input_path", metavar="INPUT")
@click.option(
    "--output",
    "-o",
    required=True,
    help="Store: a folder, s3://bucket/prefix or gs://bucket/prefix (created, or resumed if interrupted).",
)
@model_option
@device_option
@click.option(
    "--dtype",
    type=click.Choice(list(DTYPES)),
    default="float16",
    show_default=True,
    help="Stored precision: float16 (max error 2.4e-4), float32, qN = round(p*(2^N-1)) for N = 8..16 (max error "
    "0.5/(2^N-1): q10 4.9e-4 at 39% of float16's bytes), uint8 = q8.",
)
@click.option(
    "--compute-dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    default=None,
    help="Model precision [default: float16 on CUDA, float32 on CPU]; softmax is always fp32.",
)
@click.option("--layers", default=None, help="Layers to keep, e.g. 0-5 or 0,3,11 (0-based) [default: all].")
@click.option("--heads", default=None, help="Heads to keep in every kept layer, e.g. 0-3 [default: all].")
@click.option("--max-length", default=512, show_default=True, help="Longest sequence in wordpieces, specials included.")
@click.option("--no-truncate", is_flag=True, help="Fail on longer inputs instead of cutting and flagging them.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "tsv", "jsonl", "conllu"]),
    default=None,
    help="Input format [default: from the extension; text for stdin].",
)
@click.option("--text-field", default="text", show_default=True, help="JSONL: field with the sentence.")
@click.option("--pair-field", default="text_b", show_default=True, help="JSONL: optional field with segment B.")
@click.option(
    "--codec",
    type=click.Choice(list(CODEC_CHOICES)),
    default="auto",
    show_default=True,
    help="Chunk compressor; auto = measured per dtype: blosc-lz4+bitshuffle for floats, zstd for uint8/q8, "
    "blosc-zstd+bitshuffle for q9..q16 (all crc32c-checksummed).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "onnx"]),
    default="auto",
    show_default=True,
    help="auto = onnx on CPU when onnxruntime is installed and its export passes a parity check against torch on "
    "the bundled sample (cached per export), else torch; a resumed store keeps the backend it was made with.",
)
@click.option(
    "--budget-mb",
    type=float,
    default=None,
    help="Attention produced per batch, in MB of fp32 (batch x layers x heads x L^2 x 4).",
)
@click.option(
    "--stats-only",
    is_flag=True,
    help="Store only each map's features (those of attnx analyze), computed while the maps are on the "
    "device, not the maps.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --output instead of resuming it.")
@click.option(
    "--workers",
    default=None,
    help="Run on a local Dask cluster of N worker processes, or 'gpus' for one per visible GPU (needs the dask "
    "extra). Records, tokens and offsets are the same as without; a map value may differ by one step of the "
    "stored dtype (e.g. float16), because shards smaller than a window batch (pad) records differently.",
)
@click.option(
    "--threads-per-worker",
    type=int,
    default=0,
    help="Torch (or ONNX Runtime) threads per local worker [default: cores/N].",
)
@click.option("--scheduler", default=None, help="Run on an existing Dask cluster: its scheduler's address.")
@click.option(
    "--shard-records",
    type=int,
    default=None,
    help="With --workers/--scheduler: input records per shard (the unit of work, merge and resume) [default: "
    "16,384; for a file of fewer than workers x 4 x 16,384 records, sized so each worker gets about 4 shards, "
    "in whole 4,096-record windows, at least 256; stdin keeps 16,384].",
)
@click.option(
    "--retries",
    type=int,
    default=3,
    show_default=True,
    help="With --workers/--scheduler: times a shard may lose its worker before the run fails.",
)
@click.option(
    "--compact",
    is_flag=True,
    help="Once the store is complete, keep only its newest snapshot and delete unreferenced objects (as attnx "
    "compact: the commit history is lost, the data is not).",
)
@quiet_json_options
@one_line_errors
def extract_cmd(
    input_path: str,
    output: str,
    model: str,
    device: str,
    dtype: str,
    compute_dtype: str | None,
    layers: str | None,
    heads: str | None,
    max_length: int,
    no_truncate: bool,
    fmt: str | None,
    text_field: str,
    pair_field: str,
    codec: str,
    backend: str,
    budget_mb: float | None,
    stats_only: bool,
    overwrite: bool,
    workers: str | None,
    threads_per_worker: int,
    scheduler: str | None,
    shard_records: int | None,
    retries: int,
    compact: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run a model over INPUT (text, TSV pairs, JSONL, CoNLL-U; gzip or '-' for stdin) and store every
    attention map, ragged and compressed, in a Zarr store. An interrupted run resumes where it stopped.

    Example: attnx extract corpus.txt -o corpus.zarr --layers 0-5 --dtype uint8

    On several processes, GPUs or hosts: --workers 4, --workers gpus, or --scheduler tcp://host:8786.
    """
    from attnx.engine.extract import ExtractOptions, extract, parse_index_list
    from attnx.engine.model import model_shape

    n_layers, n_heads = model_shape(model)
    opts = ExtractOptions(
        input=input_path,
        output=output,
        model=model,
        device=device,
        dtype=dtype,
        compute_dtype=compute_dtype,
        layers=parse_index_list(layers, n_layers, "layers"),
        heads=parse_index_list(heads, n_heads, "heads"),
        max_length=max_length,
        truncate=not no_truncate,
        format=fmt,
        text_field=text_field,
        pair_field=pair_field or None,
        codec=codec,
        backend=backend,
        budget_bytes=int(budget_mb * 1e6) if budget_mb else None,
        stats_only=stats_only,
        overwrite=overwrite,
    )
    progress = _Progress(not quiet and not as_json, _count_lines(input_path))
    try:
        from attnx.scaleout.dask_cluster import cluster_spec

        spec = cluster_spec(workers, scheduler, threads_per_worker, retries)
        if spec is not None:
            from attnx.scaleout.coordinator import extract_distributed

            announce = (lambda line: None) if quiet or as_json else (lambda line: click.echo(line, err=True))
            summary = extract_distributed(opts, spec, shard_records, progress=progress, announce=announce)
        else:
            summary = extract(opts, progress=progress)
        rates = progress.finish(summary) if summary.status == "complete" else ""
    finally:
        progress.close()
    compacted = None
    if compact and summary.status in ("complete", "already complete"):
        from attnx.store.compact import compact_store

        compacted = compact_store(summary.store)
    if as_json:
        click.echo(
            json.dumps({**summary.to_json(), **({"compact": compacted.to_json()} if compacted else {})}, indent=2)
        )
    elif summary.status == "already complete":
        click.echo(f"{summary.store}: already complete ({summary.records} records); nothing to do")
    else:
        resumed = f" (resumed after {summary.resumed_from})" if summary.resumed_from else ""
        click.echo(
            f"stored {summary.records} records{resumed} in {summary.store} in {summary.seconds:,.1f} s: "
            f"{rates} of attention, {summary.store_bytes / 1e6:,.1f} MB on disk "
            f"({summary.device}, {summary.compute_dtype}, {summary.backend} backend)"
        )
    if compacted is not None and not as_json:
        from attnx.cli.store_cmds import compact_summary

        click.echo(compact_summary(compacted))


@click.command("info")
@click.argument("store_path", metavar="STORE")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option(
    "--history",
    "n_history",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="List the newest N commits (0: every commit; each is a snapshot read, and a long run makes hundreds).",
)
@one_line_errors
def info_cmd(store_path: str, as_json: bool, n_history: int) -> None:
    """Summarise a store: records, tokens, bytes, model, dtype, codec, compression ratio, newest commits.

    Example: attnx info corpus.zarr
    """
    from attnx.store import open_store

    store = open_store(store_path)
    info = store.info()
    # two more than shown tell whether older commits exist besides Icechunk's first (an empty repository, the
    # oldest of every store), without reading them
    history = store.history(limit=n_history + 2 if n_history else None)
    if as_json:
        more = bool(n_history) and len(history) > n_history
        history = history[:n_history] if n_history else history
        click.echo(json.dumps({**info, "history": history, "history_truncated": more}, indent=2, default=str))
        return
    more = bool(n_history) and len(history) > n_history + 1
    if not more and history and history[-1]["records"] is None:
        history = history[:-1]  # the first commit, when every other one is listed
    history = history[:n_history] if n_history else history
    model = info["model"]
    ratio = info["compression_ratio"]
    rows = [
        ("store", f"{info['path']} ({'complete' if info['complete'] else 'INCOMPLETE: resume with attnx extract'})"),
        ("records", f"{info['records']:,} ({info['truncated']:,} truncated)"),
        ("tokens", f"{info['tokens']:,} (mean length {info['mean_length']:.1f}, max {info['max_length']})"),
        (
            "model",
            f"{model.get('name')} ({model.get('layers')} layers x {model.get('heads')} heads, "
            f"weights sha256 {str(model.get('weights_sha256'))[:16]})",
        ),
        ("kept", f"layers {_ranges(info['layers'])}, heads {_ranges(info['heads'])}"),
        ("dtype", f"{info['dtype']} (computed in {info['options'].get('compute_dtype')})"),
        ("backend", _backend_line(info["options"].get("backend"), (info.get("precision") or {}).get("backend_parity"))),
        ("precision", _precision_line(info.get("precision") or {})),
        ("codec", f"{info['codec']} + crc32c"),
        (
            "attention" if info["payload"] == "maps" else "features",
            f"{info['attention_bytes_raw'] / 1e6:,.1f} MB raw, {info['attention_bytes_disk'] / 1e6:,.1f} MB "
            f"on disk" + (f", ratio {ratio:.2f}x" if ratio else ""),
        ),
        ("store size", f"{info['store_bytes_disk'] / 1e6:,.1f} MB"),
        ("input", f"{info['input'].get('path')} ({info['options'].get('format')})"),
        ("created", f"{info['created']} by attnx {info['attnx_version']}"),
    ]
    for key, value in rows:
        click.echo(f"{key:>11}  {value}")
    what = f"newest {len(history)} commits" if more else f"{len(history)} commits"
    click.echo(f"{'snapshots':>11}  {what} on branch main, newest {info['snapshot']}")
    # commits that another program made on top of attnx's are listed with their message: readers open the newest
    for h in history:
        if h["records"] is None:
            change = f"not an attnx commit: {str(h['message'])[:60]!r}"
        else:
            change = f"{h['records']:>10,} records (+{h['records_added']:,})"
        click.echo(f"{'':>11}  {h['time']}  {change}  {h['snapshot']}")
    if more:
        click.echo(f"{'':>11}  ... and more before these (attnx info --history 0 lists every commit)")
    from attnx.analysis.quantisation_warnings import quantisation_warnings

    for line in quantisation_warnings(store):
        click.echo(f"warning: {line}", err=True)
    if info["truncated"]:
        click.echo(
            f"warning: {store_path}: {info['truncated']:,} of {info['records']:,} records were cut to --max-length "
            f"{info['options'].get('max_length')}; their maps cover the kept wordpieces only",
            err=True,
        )


def _precision_line(p: dict) -> str:
    """The stated error of the stored maps against fp32 eager attention."""
    line = f"storage {p.get('storage_dtype')}: max abs error <= {p.get('storage_max_abs_error', 0):.2g}"
    measured = p.get("measured_vs_float32")
    if measured:
        line += (
            f"; {measured['compute_dtype']} compute vs float32 on {measured['records']} sample sentences: "
            f"max {measured['max_abs_error']:.3g}, mean {measured['mean_abs_error']:.2g}, "
            f"99.9% {measured['p999_abs_error']:.3g}"
        )
    return line


def _backend_line(backend: str | None, parity: dict | None) -> str:
    """The backend that made the store, with the parity check that chose it under --backend auto."""
    if not parity:
        return str(backend)
    return (
        f"{backend} (parity vs torch on {parity['records']} sample records: max abs error "
        f"{parity['max_abs_error']:.3g} <= {parity['tolerance']:.3g})"
    )


def _ranges(values: list[int]) -> str:
    if values and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ",".join(map(str, values))


@click.command("show")
@click.argument("store_path", metavar="STORE")
@click.argument("record", type=int)
@click.option("--layer", type=int, default=0, show_default=True, help="Model layer (0-based).")
@click.option("--head", type=int, default=0, show_default=True, help="Head (0-based).")
@click.option("--output", "-o", default=None, help="PNG to write [default: STORE-RECORD-LAYER-HEAD.png].")
@one_line_errors
def show_cmd(store_path: str, record: int, layer: int, head: int, output: str | None) -> None:
    """Render one attention map as a heatmap with the wordpieces on both axes.

    Example: attnx show corpus.zarr 17 --layer 3 --head 7 -o map.png
    """
    from pathlib import Path

    from attnx.outputs import output_file
    from attnx.render import render_map
    from attnx.store import open_store

    store = open_store(store_path)
    if layer not in store.layers or head not in store.heads:
        raise AttnxError(
            f"{store_path}: layer {layer} head {head} not stored (layers {_ranges(store.layers)}, "
            f"heads {_ranges(store.heads)})"
        )
    try:
        maps = store.attention(record)
    except IndexError as exc:
        raise AttnxError(str(exc)) from None
    out = str(output_file(output or f"{store_path.rstrip('/')}-{record}-L{layer}-H{head}.png", default=not output))
    model = str(store.attrs.get("model", {}).get("name", "?"))
    model = model if len(model) <= 60 else model[:57] + "..."  # a title line, whatever the attributes hold
    store.word_ids(record)  # the record's word arrays are checked too: a damaged record is not drawn
    if store.attrs.get("conllu"):
        store.dependencies(record)
    render_map(
        maps[store.layers.index(layer), store.heads.index(head)],
        store.tokens(record),
        out,
        title=f"{Path(store.path).name if store.location.local else store.path} ({model}): "
        f"record {record}, layer {layer}, head {head}",
    )
    click.echo(out)


@click.command("demo")
@click.option("--output", "-o", default="attnx-demo", show_default=True, help="Folder for the demo stores.")
@device_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@one_line_errors
def demo_cmd(output: str, device: str, quiet: bool) -> None:
    """Run the main job on the embedded defaults: the packaged all-MiniLM-L6-v2 over the bundled sample
    corpus (300 sentences) and sample pairs (80), analyse both stores (features, pattern types, head
    similarity) and render their reports, then print where everything is.

    Example: attnx demo -o attnx-demo
    """
    from pathlib import Path

    from attnx.engine.extract import ExtractOptions, extract
    from attnx.store import open_store

    data = Path(__file__).resolve().parents[1] / "data"
    Path(output).mkdir(parents=True, exist_ok=True)
    for name, store_name in (("sample.txt", "sample.zarr"), ("sample_pairs.tsv", "pairs.zarr")):
        out = Path(output) / store_name
        progress = _Progress(not quiet, _count_lines(str(data / name)))
        try:
            summary = extract(ExtractOptions(input=str(data / name), output=str(out), device=device), progress=progress)
            if summary.status == "complete":
                progress.finish(summary)
        finally:
            progress.close()
        info = open_store(out).info()
        click.echo(
            f"{out}: {info['records']} records, {info['tokens']:,} tokens, {summary.status}"
            + (f", {summary.sentences_per_s:,.1f} sent/s" if summary.status == "complete" else "")
            + f", {info['store_bytes_disk'] / 1e6:,.1f} MB on disk"
        )
    from attnx.cli.analyze import analyze, report

    ctx = click.get_current_context()
    for store_name in ("sample.zarr", "pairs.zarr"):
        out = Path(output) / store_name
        ctx.invoke(analyze, store=out, progress=not quiet)
        ctx.invoke(report, source=out, output=Path(output) / f"report-{store_name.removesuffix('.zarr')}")
    click.echo(
        f"done: stores, analyses and reports in {Path(output).resolve()} "
        f"(try: attnx info {Path(output) / 'sample.zarr'})"
    )
