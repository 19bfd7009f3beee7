"""Options shared by several commands, as decorators so their names stay the same everywhere."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator

import click

from attnx.errors import AttnxError, AttnxWarning


def model_option(f: Callable) -> Callable:
    return click.option(
        "--model",
        "-m",
        default="minilm",
        show_default=True,
        help="'minilm' (packaged real all-MiniLM-L6-v2), a local BERT, RoBERTa, XLM-R, DistilBERT, ELECTRA or "
        "ALBERT directory with safetensors weights, or random-<family>-<size> (family bert, roberta, xlmr, "
        "distilbert, electra, albert; size tiny, small, base, large).",
    )(f)


def device_option(f: Callable) -> Callable:
    return click.option(
        "--device", default="auto", show_default=True, help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N."
    )(f)


def quiet_json_options(f: Callable) -> Callable:
    f = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")(f)
    return click.option("--quiet", "-q", is_flag=True, help="No progress bar.")(f)


def one_line_errors(f: Callable) -> Callable:
    """Turn attnx's own errors into click's one-line ``Error: ...`` and a non-zero exit."""

    @functools.wraps(f)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            with echo_warnings():
                return f(*args, **kwargs)
        except AttnxError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; run the same command again to resume") from None

    return wrapper


@contextlib.contextmanager
def echo_warnings() -> Iterator[None]:
    """Print the library's :class:`~attnx.errors.AttnxWarning` as ``warning: ...`` lines on stderr (every one,
    not once per place; an open progress bar is not torn); other warnings as Python shows them."""
    from attnx.cli.progress import _note

    with warnings.catch_warnings():
        warnings.simplefilter("always", AttnxWarning)
        shown = warnings.showwarning

        def show(message, category, *rest, **kw) -> None:  # noqa: ANN001, ANN002, ANN003
            if issubclass(category, AttnxWarning):
                _note(f"warning: {message}")
            else:
                shown(message, category, *rest, **kw)

        warnings.showwarning = show
        yield
