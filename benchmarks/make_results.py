"""Render benchmarks/RESULTS.md from benchmarks/RESULTS.template.md and the result files in benchmarks/results/
(and, with --template/--results/--out, pattern_classifier/RESULTS.md from that folder's template and results/).

    python benchmarks/make_results.py            # rewrite RESULTS.md
    python benchmarks/make_results.py --check    # exit 1 if RESULTS.md differs from what the files give

The template is prose with placeholders; every figure in RESULTS.md comes from one of them, so every figure has
a result file behind it:

* ``{{table:NAME}}`` or ``{{table:NAME:ARG}}``: a table rendered by ``results_sections.TABLES[NAME]``;
* ``{{FILE/PATH :FORMAT}}``: one value of ``results/FILE`` (``.json`` may be left off). PATH steps are
  dict keys, list indices, ``[key=value,...]`` (keep the list items that match), a key applied to every
  item of a list, ``min`` / ``max`` / ``median`` / ``len`` / ``sum`` / ``first`` / ``last`` of a list,
  ``@values`` (a dict's values as a list) and ``*X`` (multiply by X). FORMAT is a Python format spec; a
  list left at the end is joined with ", ".

An unknown file or key is an error naming the placeholder and its line in the template.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results_sections import TABLES  # noqa: E402 - benchmarks/ is not a package

PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}")
FUNCS = {"min": min, "max": max, "median": statistics.median, "len": len, "sum": sum, "first": lambda v: v[0],
         "last": lambda v: v[-1]}


class RenderError(Exception):
    """A placeholder that the result files cannot fill."""


def _step(value: object, step: str) -> object:
    if step.startswith("[") and step.endswith("]"):
        want = dict(part.split("=", 1) for part in re.split(r",(?=[\w.+-]+=)", step[1:-1]))  # "a=x, y,b=z"
        return [v for v in value if all(str(v.get(k)) == w for k, w in want.items())]
    if step == "@values":
        return list(value.values())
    if step.startswith("*"):
        factor = float(step[1:])
        return [v * factor for v in value] if isinstance(value, list) else value * factor
    if isinstance(value, list):
        if step in FUNCS:
            return FUNCS[step](value)
        if step.lstrip("-").isdigit():
            return value[int(step)]
        return [_step(v, step) for v in value]
    if isinstance(value, dict) and step in value:
        return value[step]
    raise KeyError(step)


def lookup(results: Path, spec: str, cache: dict) -> str:
    """The text for ``FILE/PATH :FORMAT``."""
    path, _, fmt = spec.partition(" :")
    name, *steps = path.strip().split("/")
    file = results / (name if name.endswith(".json") else f"{name}.json")
    if file not in cache:
        cache[file] = json.loads(file.read_text())
    value = cache[file]
    for step in steps:
        value = _step(value, step)
    if isinstance(value, list):
        return ", ".join(format(v, fmt) for v in value)
    return format(value, fmt)


def render(template: str, results: Path, where: str = "RESULTS.template.md") -> str:
    cache: dict = {}
    out = []
    for lineno, line in enumerate(template.splitlines(keepends=True), 1):
        def fill(m: re.Match, lineno: int = lineno) -> str:
            spec = m.group(1).strip()
            try:
                if spec.startswith("table:"):
                    _, name, *arg = spec.split(":", 2)
                    return TABLES[name](results, *arg)
                return lookup(results, spec, cache)
            except (KeyError, IndexError, ValueError, TypeError, OSError) as exc:
                raise RenderError(f"{where}:{lineno}: {{{{{spec}}}}}: {type(exc).__name__}: {exc}") from None

        out.append(PLACEHOLDER.sub(fill, line))
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--template", type=Path, default=HERE / "RESULTS.template.md")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = ap.parse_args(argv)
    try:
        text = render(args.template.read_text(encoding="utf-8"), args.results, args.template.name)
    except RenderError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        if not same:
            print(f"{args.out} differs from what {args.template.name} and {args.results} give: "
                  "run python benchmarks/make_results.py", file=sys.stderr)
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
