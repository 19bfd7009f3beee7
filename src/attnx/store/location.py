"""Where a store lives (a local path, ``s3://bucket/prefix``, ``gs://bucket/prefix``) and the writer's lock.

Icechunk commits on object stores are safe under concurrency (conditional writes: a second committer gets a
conflict); on a local file system they are not, so a writer holds an OS file lock (``filelock``) beside the
store for its whole life: ``.NAME.attnx-lock`` in the store's parent folder, with the holder's pid, host and
start time in ``.NAME.attnx-lock.json``. The kernel drops the lock when its holder dies, so a lock left by a
killed process is simply taken over.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import filelock
import icechunk

from attnx.errors import StoreError

_SCHEMES = ("s3://", "gs://", "gcs://")

# Icechunk prints a warning block on *stdout* each time a local storage is opened ("LocalFileSystem storage is
# not safe for concurrent commits"): attnx holds the lock above for every local writer, and the block broke
# anything reading a notebook's or a pipeline's stdout. Only the warnings of the module that emits it are
# dropped (its errors and every other module's warnings stay); ICECHUNK_LOG, when set, is the user's choice and
# is left alone, and so is any filter set with ``icechunk.set_logs_filter`` after attnx is imported.
ICECHUNK_LOGS = "icechunk=warn,icechunk::storage::object_store=error"
if "ICECHUNK_LOG" not in os.environ:
    icechunk.set_logs_filter(ICECHUNK_LOGS)


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store address. ``kind`` is "local", "s3" or "gcs"."""

    kind: str
    path: str  # local: absolute path; object stores: "bucket/prefix"

    @classmethod
    def parse(cls, where: str | os.PathLike | StoreLocation) -> StoreLocation:
        if isinstance(where, StoreLocation):
            return where
        text = os.fspath(where)
        if text.startswith("file://"):
            text = text[len("file://") :]
        for scheme in _SCHEMES:
            if text.startswith(scheme):
                rest = text[len(scheme) :].strip("/")
                if not rest.split("/")[0]:
                    raise StoreError(f"{text}: no bucket in the store URL")
                return cls("s3" if scheme == "s3://" else "gcs", rest)
        if "://" in text:
            raise StoreError(
                f"{text}: unsupported store URL (use a local path, s3://bucket/prefix or gs://bucket/prefix)"
            )
        # symlinks are followed: a linked store (or a link to where a new one should go) is the folder it points
        # to, which attnx reads, locks, writes and (--overwrite) deletes; the link itself is left alone
        return cls("local", os.path.realpath(Path(text).expanduser()))

    def __str__(self) -> str:
        return self.path if self.kind == "local" else f"{'s3' if self.kind == 's3' else 'gs'}://{self.path}"

    @property
    def local(self) -> Path | None:
        return Path(self.path) if self.kind == "local" else None

    def storage(self) -> icechunk.Storage:
        """The Icechunk storage object. Object-store credentials and endpoints come from the environment
        (``AWS_*``, e.g. ``AWS_ENDPOINT_URL`` for an S3-compatible server; ``GOOGLE_*`` for GCS)."""
        if self.kind == "local":
            return icechunk.local_filesystem_storage(self.path)
        bucket, _, prefix = self.path.partition("/")
        if self.kind == "gcs":
            return icechunk.gcs_storage(bucket=bucket, prefix=prefix or None, from_env=True)
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return icechunk.s3_storage(
            bucket=bucket,
            prefix=prefix or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            endpoint_url=endpoint,
            allow_http=bool(endpoint and endpoint.startswith("http://")),
            force_path_style=bool(endpoint),
            from_env=True,
        )

    def exists(self) -> bool:
        """True where an Icechunk repository is found."""
        if self.kind == "local" and not Path(self.path).is_dir():
            return False
        try:
            return bool(icechunk.Repository.exists(self.storage()))
        except Exception as exc:  # noqa: BLE001 - storage errors (no bucket, no credentials) become one line
            raise StoreError(f"{self}: cannot reach the store ({_first_line(exc)})") from None

    def is_format_1(self) -> bool:
        """A local plain-Zarr store written by attnx 0.1 (format attnx-store/1)."""
        meta = Path(self.path) / "zarr.json"
        if self.kind != "local" or not meta.is_file():
            return False
        try:
            return json.loads(meta.read_text()).get("attributes", {}).get("attnx", {}).get("format") == "attnx-store/1"
        except (OSError, ValueError, AttributeError):
            return False

    def remove(self) -> None:
        """Delete the store (``--overwrite``): local stores only."""
        if self.kind != "local":
            raise StoreError(f"{self}: --overwrite deletes local stores only; delete the prefix with your cloud tools")
        path = Path(self.path)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip(" x|`->") for ln in str(exc).splitlines() if ln.strip(" x|`->")]
    return lines[0] if lines else type(exc).__name__


class WriterLock:
    """Exclusive right to write a store, held for a writer's life (local stores; a no-op on object stores).

    ``acquire`` fails at once with a one-line :class:`StoreError` naming the store and the holder.
    """

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self._lock: filelock.BaseFileLock | None = None
        if location.kind == "local":
            path = Path(location.path)
            self.lock_path = path.parent / f".{path.name}.attnx-lock"
            self.info_path = path.parent / f".{path.name}.attnx-lock.json"

    def acquire(self) -> WriterLock:
        if self.location.kind != "local":
            return self
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.location}: cannot create store ({exc.strerror or exc})") from None
        try:  # filelock reports a lock file it cannot create as held by someone: ask the OS first
            os.close(os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644))
        except OSError as exc:
            raise StoreError(
                f"{self.location}: cannot write in {self.lock_path.parent} ({exc.strerror or exc}); "
                "choose another output folder"
            ) from None
        lock = filelock.FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise StoreError(f"{self.location}: being written by {self.holder()}; wait for it to finish") from None
        except OSError as exc:
            raise StoreError(f"{self.location}: cannot take the writer lock ({exc.strerror or exc})") from None
        self._lock = lock
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": _dt.datetime.now(_dt.UTC).isoformat()}
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.info_path)
        return self

    def holder(self, wait_s: float = 1.0) -> str:
        """Who holds the lock, from the info its holder writes just after taking it: a writer that lost a race
        by microseconds can get here before that file exists, so it is waited for up to ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                info = json.loads(self.info_path.read_text())
                return f"pid {info['pid']} on {info['host']} since {info['started'][:19].replace('T', ' ')} UTC"
            except (OSError, ValueError, KeyError, TypeError):
                if time.monotonic() >= deadline:
                    return "another process"
                time.sleep(0.02)

    def release(self) -> None:
        if self._lock is not None:
            self.info_path.unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
