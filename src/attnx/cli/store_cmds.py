"""``attnx verify`` and ``attnx convert``: thin wrappers over :mod:`attnx.store.verify` and ``.convert``."""

from __future__ import annotations

import json

import click

from attnx.cli.options import one_line_errors


@click.command("verify")
@click.argument("store_path", metavar="STORE")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@one_line_errors
def verify_cmd(store_path: str, as_json: bool) -> None:
    """Read every chunk of STORE's newest snapshot and check every invariant; exit 1 at the first failure.

    Example: attnx verify corpus.zarr
    """
    from attnx.store.verify import verify_store

    report = verify_store(store_path)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    chunks = sum(report.chunks_read.values())
    click.echo(
        f"{report.path}: OK, snapshot {report.snapshot} ({'complete' if report.complete else 'incomplete'}): "
        f"{report.records:,} records, {report.tokens:,} tokens, {report.payload_elements:,} payload elements "
        f"in {chunks:,} chunks, checked in {report.seconds:.1f} s"
    )
    for check in report.checks:
        click.echo(f"  checked: {check}")
    if report.max_row_sum_error:
        click.echo(f"  largest |row sum - 1|: {report.max_row_sum_error:.2e}")


@click.command("convert")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@one_line_errors
def convert_cmd(old: str, new: str) -> None:
    """Copy a complete store of attnx 0.1 (format 1, plain Zarr) into a new transactional store NEW.

    Example: attnx convert corpus.zarr corpus-v2.zarr
    """
    from attnx.store.convert import convert_format_1

    n = convert_format_1(old, new)
    click.echo(f"converted {n:,} records from {old} into {new}")
