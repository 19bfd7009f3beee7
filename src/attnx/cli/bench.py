"""``attnx bench``: how many sentences per second does this machine dump? A thin wrapper over attnx.bench."""

from __future__ import annotations

import json
from pathlib import Path

import click

from attnx.cli.options import device_option, one_line_errors
from attnx.errors import AttnxError


@click.command("bench")
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
def bench_cmd(
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

    if not Path(input_path).is_file():
        raise AttnxError(f"{input_path}: no such file")
    out = run_suite(
        input_path,
        models.split(","),
        {"*": limit},
        device=device if device != "auto" else ("cuda" if __import__("torch").cuda.is_available() else "cpu"),
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
