"""``attnx ablate``, ``attnx importance`` and ``attnx rollout``: thin wrappers over attnx.ablation and
attnx.analysis.rollout."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from attnx.cli.options import device_option, model_option, one_line_errors
from attnx.cli.progress import RateBar, Stage, per_s


class _RowsBar:
    """Forward rows (example x configuration) done, over wall time since the command's work started."""

    def __init__(self, desc: str, total: int | None = None) -> None:
        self.bar = RateBar(True, total, "rows", desc, {"rows": per_s("rows", fmt=",.0f")})
        self.rows = 0
        self.t0 = 0.0

    def __enter__(self) -> _RowsBar:
        import time

        from attnx.ablation.batching import reporting

        self.t0 = time.perf_counter()
        self.bar.start()
        self._ctx = reporting(self)
        self._ctx.__enter__()
        return self

    def __call__(self, rows: int) -> None:
        self.rows += rows
        self.bar.update(self.rows, rows=self.rows)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
        self.bar.close()

    def finish(self) -> str:
        """Close the bar with the rate over the whole run; returns the same text the summary prints."""
        import time

        self.seconds = time.perf_counter() - self.t0
        return self.bar.finish(self.rows, self.seconds, rows=self.rows)


def _data_options(f: Callable) -> Callable:
    f = click.option("--limit", type=int, default=None, help="Use a seeded random sample of this many examples.")(f)
    f = click.option("--max-length", type=int, default=128, show_default=True, help="Wordpieces per example.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True, help="Split, probe and bootstrap seed.")(f)
    f = click.option(
        "--train-frac",
        type=float,
        default=0.5,
        show_default=True,
        help="With --probe: fraction of the data the probe is fitted on; the rest is evaluated.",
    )(f)
    f = click.option(
        "--pool",
        type=click.Choice(["mean", "cls", "pooler"]),
        default="mean",
        show_default=True,
        help="With --probe: features the probe reads (mean over real tokens, [CLS], or BERT's pooler).",
    )(f)
    f = click.option(
        "--probe",
        type=click.Choice(["logistic"]),
        default=None,
        help="Fit a linear probe on the frozen unablated encoder (for models without a task head).",
    )(f)
    f = click.option(
        "--task",
        type=click.Choice(["auto", "classification", "regression"]),
        default="auto",
        show_default=True,
        help="Label type (auto: regression when labels are non-integer numbers).",
    )(f)
    f = click.option(
        "--metric",
        type=click.Choice(["accuracy", "f1", "mcc", "pearson", "spearman"]),
        default=None,
        help="Score (default: accuracy, or pearson for regression).",
    )(f)
    f = click.option("--no-header", is_flag=True, help="TSV without a header row (needs --text-col/--label-col).")(f)
    f = click.option("--label-col", default=None, help="Label column name or 0-based number.")(f)
    f = click.option(
        "--text-col",
        "text_cols",
        multiple=True,
        help="Text column name or 0-based number (twice for pairs); default: GLUE names.",
    )(f)
    f = click.option(
        "--data",
        "-d",
        "data_path",
        required=True,
        type=click.Path(dir_okay=False),
        help="Labelled data: GLUE-style TSV (with header) or JSONL.",
    )(f)
    return f


def _prepare(
    model,
    device,
    data_path,  # the options of _data_options except --metric, in any order (passed by name)
    text_cols,
    label_col,
    no_header,
    task,
    probe,
    pool,
    train_frac,
    seed,
    max_length,
    limit,
):  # noqa: ANN001, ANN202
    from attnx.ablation.data import check_train_frac, read_labelled
    from attnx.ablation.prepare import prepare
    from attnx.ablation.task_model import load_task_model, resolve_device
    from attnx.errors import AttnxError

    try:
        check_train_frac(train_frac)  # before the model loads
    except AttnxError as e:
        raise click.UsageError(str(e)) from None
    dev, dtype = resolve_device(device)
    data = read_labelled(data_path, tuple(text_cols) or None, label_col, header=not no_header)
    with Stage(True, f"loading {model}"):
        tm = load_task_model(model, probe, dev, dtype, pooling=pool, seed=seed, max_length=max_length)
    n = min(limit, len(data.text_a)) if limit else len(data.text_a)
    with Stage(True, f"encoding {n:,} examples of {data_path}" + (" and fitting the probe" if probe else "")):
        return prepare(tm, data, task, train_frac, seed, limit)


@click.command("ablate")
@model_option
@_data_options
@device_option
@click.option(
    "--mode",
    type=click.Choice(["uniform", "zero"]),
    default="uniform",
    show_default=True,
    help="uniform: the head attends uniformly to real tokens (Kovaleva et al.); "
    "zero: the head's output is removed (Michel et al.).",
)
@click.option(
    "--heads",
    "head_sets",
    multiple=True,
    help="Also ablate this set of heads together, as layer:head pairs (0-based), e.g. 3:7,5:1; "
    "repeat for several sets.",
)
@click.option("--no-grid", is_flag=True, help="Skip the single-head and whole-layer grid (only --heads sets).")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap resamples (0: none).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@one_line_errors
def ablate_cmd(model, device, metric, mode, head_sets, no_grid, bootstrap, output, **data) -> None:  # noqa: ANN001, ANN003
    """Score a classifier with every single head and every whole layer switched off, in one batched pass.

    Writes heads.csv, layers.csv, summary.json and heads.png (layers x heads, centred on the unablated
    score; framed cells beat it beyond their bootstrap interval).

    \b
    Example:
      attnx ablate --model path/to/finetuned-bert --data sst2_dev.tsv --mode uniform -o sst2_ablation/
      attnx ablate --model minilm --data qnli_dev.tsv --probe logistic --mode zero -o out/
    """
    from attnx.ablation.analysis import run_ablation, write_ablation
    from attnx.ablation.configs import check_grid, parse_head_set
    from attnx.ablation.task_model import n_heads_shape
    from attnx.errors import AttnxError

    try:
        check_grid(not no_grid, head_sets)  # before the model loads
    except AttnxError as e:
        raise click.UsageError(str(e)) from None
    prep = _prepare(model, device, **data)
    layers, heads = n_heads_shape(prep.tm)
    sets = [parse_head_set(s, layers, heads) for s in head_sets]
    n_configs = 1 + (0 if no_grid else layers * heads + layers) + len(sets)
    with _RowsBar("ablate", n_configs * len(prep.eval)) as bar:  # every configuration x every eval example
        result = run_ablation(prep, mode, metric, grid=not no_grid, head_sets=sets, n_boot=bootstrap)
        rates = bar.finish()
    summary = write_ablation(
        result,
        output,
        extra={
            "model": model,
            "data": str(data["data_path"]),
            "probe": data["probe"],
            "device": str(prep.tm.lm.device),
        },
    )
    click.echo(
        f"{result.metric} unablated {summary['unablated_score']:.4f} ({result.n_eval} examples, "
        f"{len(result.configs)} configurations; {bar.rows:,} forward rows in {bar.seconds:.1f} s, {rates}); "
        f"{summary['improving_heads_count']} heads improve it when removed "
        f"({summary['improving_beyond_interval_count']} beyond the interval) -> {output}"
    )


@click.command("importance")
@model_option
@_data_options
@device_option
@click.option(
    "--normalise/--no-normalise",
    default=True,
    show_default=True,
    help="Divide each layer's importance scores by their l2 norm (Michel et al.).",
)
@click.option(
    "--mode",
    type=click.Choice(["zero", "uniform"]),
    default="zero",
    show_default=True,
    help="How pruned heads are switched off for the pruning curve.",
)
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@one_line_errors
def importance_cmd(model, device, metric, normalise, mode, output, **data) -> None:  # noqa: ANN001, ANN003
    """Head importance |dL/dxi_h| (Michel et al. 2019) and the score when heads are pruned in that order.

    Writes importance.csv, importance.png, pruning.csv (10% steps), pruning.png and importance.json.

    \b
    Example:
      attnx importance --model minilm --data sst2_dev.tsv --probe logistic -o imp/
    """
    from attnx.ablation.importance import write_importance

    prep = _prepare(model, device, **data)
    # one gradient pass over the eval examples, then 11 pruning steps (0%, 10%, ..., 100%) over them
    with _RowsBar("importance", 12 * len(prep.eval)) as bar:
        summary = write_importance(prep, output, normalise, metric, mode,
                                   about={"model": model, "data": str(data["data_path"])})
        rates = bar.finish()
    curve = ", ".join(f"{p['fraction']:.0%}: {p['score']:.3f}" for p in summary["pruning"])
    click.echo(f"{summary['metric']} after pruning {curve} ({bar.rows:,} forward rows in {bar.seconds:.1f} s, "
               f"{rates}) -> {output}")


@click.command("rollout")
@click.argument("store_path", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@one_line_errors
def rollout_cmd(store_path, as_json) -> None:  # noqa: ANN001
    """Attention rollout (Abnar & Zuidema 2020): heads averaged, 0.5 A + 0.5 I, multiplied over layers.

    One l x l matrix per record, stored back into the store as derived/rollout (read it with
    attnx.open_store(path).derived("rollout", i)).

    \b
    Example:
      attnx rollout corpus.zarr
    """
    from attnx.analysis.rollout import store_rollout
    from attnx.store import open_store

    n = len(open_store(store_path))
    bar = RateBar(not as_json, n, "rec", "rollout", {"records": per_s("records")})
    try:
        bar.start()
        summary = store_rollout(store_path, progress=lambda done: bar.update(done, records=done))
        rates = bar.finish(summary["records"], summary["seconds"], records=summary["records"])
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"rollout of {summary['records']} records in {summary['seconds']:.2f} s ({rates}) -> "
                   f"{summary['output']}")


__all__ = ["ablate_cmd", "importance_cmd", "rollout_cmd"]
