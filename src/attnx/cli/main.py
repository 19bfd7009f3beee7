"""The ``attnx`` command: a click group over thin per-topic command modules."""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
from pathlib import Path

import click

# The command owns its process: numba's compiled-kernel cache goes to the user's cache folder, not into the
# installed package (set before anything imports numba); no hub lookups. The library itself changes neither.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "attnx" / "numba"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import attnx  # noqa: E402
from attnx.cli.ablate import ablate_cmd, importance_cmd, rollout_cmd  # noqa: E402
from attnx.cli.analyze import analyze as analyze_cmd  # noqa: E402
from attnx.cli.analyze import compare as compare_cmd  # noqa: E402
from attnx.cli.analyze import report as report_cmd  # noqa: E402
from attnx.cli.bench import bench_cmd  # noqa: E402
from attnx.cli.extract import demo_cmd, extract_cmd, info_cmd, show_cmd  # noqa: E402
from attnx.cli.store_cmds import compact_cmd, convert_cmd, verify_cmd  # noqa: E402


class _Command(click.Group):
    """The console entry point. A failed command exits without interpreter teardown: after a failed read,
    Icechunk's I/O threads may still complete reads that zarr abandoned, and doing so into a finalising
    interpreter aborts the process (SIGABRT) after the one-line error was printed. Locks are released by the
    kernel; the writer has committed or dropped its work before the error reaches here."""

    def __call__(self, *args: object, **kwargs: object) -> object:  # CliRunner calls .main(), not this
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if code:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            raise


@click.group(cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(attnx.__version__, prog_name="attnx")
def main() -> None:
    """attnx: capture, store and analyse BERT self-attention maps over whole corpora."""
    _quiet_store_noise()


def _quiet_store_noise() -> None:
    """The command prints one line per error: silence Icechunk's local-storage concurrency warning (attnx
    holds a lock for every writer) and asyncio's reports of zarr read tasks left pending by a failed read."""
    import icechunk
    from zarr.core.sync import _get_loop

    icechunk.set_logs_filter("icechunk=error")
    _get_loop().set_exception_handler(lambda loop, context: None)
    default_hook = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        # zarr's read coroutines abandoned by a failed read are finalised at exit; nothing the user can act on
        if "concurrent_map" not in repr(unraisable.object):
            default_hook(unraisable)

    sys.unraisablehook = hook
    atexit.register(_settle_pending_reads, _get_loop())


def _settle_pending_reads(loop: asyncio.AbstractEventLoop) -> None:
    """Let reads still in flight after a failed read finish before the interpreter goes (Icechunk's I/O
    threads would otherwise call into a finalised interpreter and abort the process with a panic)."""

    async def settle() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    try:
        asyncio.run_coroutine_threadsafe(settle(), loop).result(timeout=15)
    except Exception:  # noqa: BLE001, S110 - exiting anyway
        pass


main.add_command(extract_cmd)
main.add_command(info_cmd)
main.add_command(verify_cmd)
main.add_command(convert_cmd)
main.add_command(compact_cmd)
main.add_command(show_cmd)
main.add_command(demo_cmd)
main.add_command(bench_cmd)
main.add_command(analyze_cmd)
main.add_command(compare_cmd)
main.add_command(report_cmd)
main.add_command(ablate_cmd)
main.add_command(importance_cmd)
main.add_command(rollout_cmd)


if __name__ == "__main__":  # python -m attnx.cli.main
    main()
