"""The ``attnx`` command: a click group over thin per-topic command modules."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import sys
import threading
from pathlib import Path

import click

# The command owns its process: numba's compiled-kernel cache goes to the user's cache folder, not into the
# installed package (set before anything imports numba); no hub lookups. The library itself changes neither.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "attnx" / "numba"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import attnx  # noqa: E402 - the version only; every command module is imported when it runs

# command name -> (module, attribute): a command's module (and what it imports: torch for extract, numba and
# scipy for analyze) is imported only when that command runs, or for --help. Importing them all made every
# command pay for the analysis stack (about 1.3 s).
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("attnx.cli.extract", "extract_cmd"),
    "info": ("attnx.cli.extract", "info_cmd"),
    "verify": ("attnx.cli.store_cmds", "verify_cmd"),
    "convert": ("attnx.cli.store_cmds", "convert_cmd"),
    "compact": ("attnx.cli.store_cmds", "compact_cmd"),
    "show": ("attnx.cli.extract", "show_cmd"),
    "demo": ("attnx.cli.extract", "demo_cmd"),
    "bench": ("attnx.cli.bench", "bench_cmd"),
    "analyze": ("attnx.cli.analyze", "analyze"),
    "compare": ("attnx.cli.analyze", "compare"),
    "report": ("attnx.cli.analyze", "report"),
    "ablate": ("attnx.cli.ablate", "ablate_cmd"),
    "importance": ("attnx.cli.ablate", "importance_cmd"),
    "rollout": ("attnx.cli.ablate", "rollout_cmd"),
}


class _Command(click.Group):
    """The console entry point, whose subcommands are imported when used (:data:`COMMANDS`).

    The command exits without interpreter teardown (a success after running the atexit handlers). For a failed
    one that matters: after a failed read, Icechunk's I/O threads may still complete reads that zarr abandoned,
    and doing so into a finalising interpreter aborts the process (SIGABRT) after the one-line error was
    printed. Locks are released by the kernel; the writer has committed or dropped its work before the error
    reaches here."""

    def __call__(self, *args: object, **kwargs: object) -> object:  # CliRunner calls .main(), not this
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if code:
                sys.stdout.flush()
                sys.stderr.flush()
                _settle_pending_reads()  # the one exit step a failure needs; the rest is skipped on purpose
                os._exit(code)
            # Success: join non-daemon threads and run the atexit handlers (the interpreter's own first steps at
            # exit), then leave without tearing the interpreter down. Finalising torch, onnxruntime, Icechunk's
            # runtime and every module took 2.7 s after a one-sentence extract (atexit done to process exit,
            # loaded 2-core machine); the work and its output are done by then.
            for thread in threading.enumerate():
                if thread is not threading.current_thread() and not thread.daemon:
                    thread.join()
            atexit._run_exitfuncs()
            with contextlib.suppress(Exception):  # e.g. a closed pipe: nothing left to tell anyone
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            import importlib

            module, attr = COMMANDS[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(attnx.__version__, prog_name="attnx")
def main() -> None:
    """attnx: capture, store and analyse BERT self-attention maps over whole corpora."""
    from attnx.memory import keep_freed_heap_pages

    _quiet_store_noise()
    # process-wide, so the command's and not the library's to set (a library user may call it): every chunk a
    # reader fetches is a fresh 8 MB buffer, and glibc unmapping each on free made every page fault in again
    keep_freed_heap_pages()


_store_noise_quieted = False


def _quiet_store_noise() -> None:
    """The command prints one line per error: silence Icechunk's local-storage concurrency warning (attnx
    holds a lock for every writer) and asyncio's reports of zarr read tasks left pending by a failed read.
    Installed once per process: a second invocation in the same process (tests, a caller of ``main``) adds
    no second hook, handler or exit function."""
    global _store_noise_quieted
    if _store_noise_quieted:
        return
    _store_noise_quieted = True
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
    atexit.register(_settle_pending_reads)


def _settle_pending_reads() -> None:
    """Let reads still in flight after a failed read finish before the interpreter goes (Icechunk's I/O
    threads would otherwise call into a finalised interpreter and abort the process with a panic). Runs at
    exit, and from the failure path, which leaves with ``os._exit`` and so skips the exit functions."""
    if not _store_noise_quieted:  # no store was touched through the command's hooks: nothing to settle
        return
    from zarr.core.sync import _get_loop

    async def settle() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    try:
        asyncio.run_coroutine_threadsafe(settle(), _get_loop()).result(timeout=15)
    except Exception:  # noqa: BLE001, S110 - exiting anyway
        pass


if __name__ == "__main__":  # python -m attnx.cli.main
    main()
