"""``attnx verify``, ``attnx convert``, ``attnx compact``: thin wrappers over :mod:`attnx.store.verify`,
``.convert`` and ``.compact``."""

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


@click.command("compact")
@click.argument("store_path", metavar="STORE")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@one_line_errors
def compact_cmd(store_path: str, as_json: bool) -> None:
    """Keep only the newest snapshot of a complete STORE and delete every object nothing references any more
    (Icechunk snapshot expiry + garbage collection). The data is unchanged; older snapshots and the commit
    history (attnx info, history()) are lost. Refused while a writer holds the store and on incomplete stores.

    Example: attnx compact corpus.zarr
    """
    from attnx.store.compact import compact_store

    report = compact_store(store_path)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    click.echo(compact_summary(report))


def compact_summary(report: object) -> str:
    """One line: snapshots expired, objects and metadata bytes before -> after (local stores)."""
    line = (
        f"{report.path}: compacted to snapshot {report.snapshot} ({report.records:,} records) in "
        f"{report.seconds:.1f} s: {report.snapshots_expired:,} snapshots expired"
    )
    b, a = report.before, report.after
    if b is not None and a is not None:
        return (
            f"{line}; objects {b.total_objects:,} -> {a.total_objects:,}, metadata {b.metadata_bytes / 1e6:,.2f} -> "
            f"{a.metadata_bytes / 1e6:,.2f} MB, store {b.total_bytes / 1e6:,.1f} -> {a.total_bytes / 1e6:,.1f} MB"
        )
    d = report.deleted
    objects = sum(v for k, v in d.items() if k != "bytes_deleted")
    return f"{line}; deleted {objects:,} objects, {d.get('bytes_deleted', 0) / 1e6:,.2f} MB"
