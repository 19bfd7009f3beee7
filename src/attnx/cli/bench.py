"""``attnx bench``: how many sentences per second does this machine dump (attnx.bench), and ``attnx bench host``:
how fast is the host side alone (attnx.bench_host)? Thin wrappers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from attnx.cli.options import device_option, model_option, one_line_errors
from attnx.errors import AttnxError


class _BenchGroup(click.Group):
    """``attnx bench INPUT ...`` runs the extraction suite (the hidden ``suite`` command) as it always has;
    ``attnx bench host ...`` runs the host benchmark."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["suite", *args]
        return super().parse_args(ctx, args)


@click.group("bench", cls=_BenchGroup)
def bench_cmd() -> None:
    """Throughput benchmarks. ``attnx bench INPUT [options]``: the extraction suite (see ``attnx bench suite
    --help``); ``attnx bench host INPUT -o STORE``: the host side alone, at device speed."""


@bench_cmd.command("suite", hidden=True)
@click.argument("input_path", metavar="INPUT")
@click.option(
    "--model",
    "models",
    default="random-bert-base",
    show_default=True,
    help="Comma-separated models: minilm, a directory, random-<family>-<size> (e.g. random-bert-base).",
)
@click.option("--limit", default=1000, show_default=True, help="Sentences of INPUT to use.")
@device_option
@click.option("--compute-dtype", "compute", default=None, help="fp16 on CUDA, fp32 on CPU by default.")
@click.option("--extra-compute", default="", help="Also run these compute dtypes, e.g. bfloat16.")
@click.option("--dtypes", default="float16,uint8", show_default=True, help="Stored dtypes to run.")
@click.option("--backends", default="torch", show_default=True, help="torch and/or onnx.")
@click.option("--rounds", default=3, show_default=True, help="Repetitions of every setting, interleaved.")
@click.option("--skip-baseline", is_flag=True, help="Do not run the naive transformers baseline.")
@click.option(
    "--output", "-o", default="attnx-bench", show_default=True, help="Folder for results.json and results.md."
)
@one_line_errors
def suite_cmd(
    input_path: str,
    models: str,
    limit: int,
    device: str,
    compute: str | None,
    extra_compute: str,
    dtypes: str,
    backends: str,
    rounds: int,
    skip_baseline: bool,
    output: str,
) -> None:
    """Measure the naive transformers baseline and each attnx setting on INPUT (one sentence per line) in one
    run, each in a fresh process per round, rounds interleaved: start-up apart from the steady-state
    sentences/s (median [min..max]), tokens/s, bytes per sentence, peak memory, ratios to the baseline of
    the same round, and each attnx row's ceilings (compute only, codec, disk) with the lowest.

    Example: attnx bench sentences.txt --model random-bert-base --device cuda --limit 20000
    """
    from attnx.bench import ceilings_table, markdown_table, run_suite
    from attnx.engine.device import resolve_device

    if not Path(input_path).is_file():
        raise AttnxError(f"{input_path}: no such file")
    out = run_suite(
        input_path,
        models.split(","),
        {"*": limit},
        device=str(resolve_device(device)),
        compute=compute,
        extra_compute=[x for x in extra_compute.split(",") if x],
        dtypes=dtypes.split(","),
        backends=backends.split(","),
        rounds=rounds,
        skip_baseline=skip_baseline,
        log=lambda m: click.echo(m, err=True),
    )
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(out, indent=2))
    hw = out["machine"].get("gpu") or f"{out['machine']['cpu']}, {out['machine']['cores']} cores"
    lo, hi = out["load_1min"]
    table = f"{markdown_table(out)}\n\nCeilings, sentences/s:\n\n{ceilings_table(out)}\n\nload {lo:.1f}-{hi:.1f}\n"
    (folder / "results.md").write_text(f"# attnx bench: {hw}\n\n{table}")
    click.echo(table)
    click.echo(f"results: {folder / 'results.json'}, {folder / 'results.md'}")


@bench_cmd.command("host")
@click.argument("input_path", metavar="INPUT")
@click.option("--output", "-o", required=True, help="Store to write (a local folder or s3:// / gs:// URL).")
@model_option
@click.option("--dtype", default="float16", show_default=True, help="Stored dtype (float16, float32, uint8, q8..q16).")
@click.option(
    "--io-threads",
    type=click.IntRange(1, 256),
    default=None,
    help="Threads that compress, checksum and store chunks [default: ATTNX_IO_THREADS, else every core but two].",
)
@click.option("--sample", default=256, show_default=True, help="Input records the real model runs on.")
@click.option("--max-length", default=512, show_default=True, help="Longest record in tokens (longer are cut).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --output.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON on stdout.")
@one_line_errors
def host_cmd(
    input_path: str,
    output: str,
    model: str,
    dtype: str,
    io_threads: int | None,
    sample: int,
    max_length: int,
    overwrite: bool,
    as_json: bool,
) -> None:
    """The host side of ``attnx extract`` at device speed: the real model runs once on --sample records of
    INPUT, then every record gets a real map of its own length replayed from them and goes through the real
    pipeline (read, tokenize, batch, collect, encode, compress, checksum, write, commit) into a real store
    (``attnx verify`` passes on it). Prints sentences/s, raw GB/s, CPU core-seconds per GB of each stage and
    the cores a host needs for BERT-base float16 at 5k, 10k and 20k sentences/s.

    Example: attnx bench host sentences.txt -o host.zarr --model random-bert-base --io-threads 2
    """
    from attnx.bench_host import HostBenchOptions, run_host_bench, summary_text

    if sample < 1:
        raise AttnxError(f"--sample {sample}: expected at least 1 record")
    result = run_host_bench(
        HostBenchOptions(input_path, output, model, dtype, io_threads, sample, max_length, overwrite)
    )
    click.echo(json.dumps(result, indent=2) if as_json else summary_text(result))
