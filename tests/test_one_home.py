"""Facts with one home: the feature and pattern names live in attnx.kernels.names (a module with no imports),
and no other module of the package spells out a copy of those lists."""

from __future__ import annotations

import ast
from pathlib import Path

import attnx
from attnx.kernels import names

SRC = Path(attnx.__file__).resolve().parent
TABLES = {"feature names": set(names.MAP_FEATURES), "pattern names": set(names.PATTERNS)}


def string_lists(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Every tuple, list or set literal of strings and every dict literal's string keys, with its line."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        if items and all(isinstance(x, ast.Constant) and isinstance(x.value, str) for x in items):
            out.append((node.lineno, [x.value for x in items]))
    return out


def test_names_module_imports_nothing() -> None:
    tree = ast.parse(Path(names.__file__).read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and n.module != "__future__"]
    assert not imports, "attnx.kernels.names must stay dependency-free"


def test_no_module_copies_the_feature_or_pattern_names() -> None:
    copies = []
    for path in sorted(SRC.rglob("*.py")):
        if path == Path(names.__file__).resolve():
            continue
        for line, items in string_lists(ast.parse(path.read_text())):
            for what, table in TABLES.items():
                if len(items) >= 4 and set(items) <= table:
                    copies.append(f"{path.relative_to(SRC)}:{line}: a copy of the {what} ({', '.join(items[:4])}, ...)")
    assert not copies, "import them from attnx.kernels.names:\n" + "\n".join(copies)


def test_feature_titles_cover_the_feature_columns_in_order() -> None:
    assert tuple(names.FEATURE_TITLES) == names.FEATURE_COLUMNS == names.MAP_FEATURES[:12]
    assert names.F == {name: k for k, name in enumerate(names.MAP_FEATURES)} and names.NF == len(names.F)


def test_every_reading_function_defaults_to_the_one_block_size() -> None:
    """``max_bytes`` / ``block_bytes`` defaults name attnx.config.BLOCK_BYTES instead of repeating 64 MiB."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.AnnAssign):
                continue
            if isinstance(node, ast.AnnAssign):  # dataclass fields
                pairs = [(node.target, node.value)] if node.value is not None else []
                pairs = [(t.id, v) for t, v in pairs if isinstance(t, ast.Name)]
            else:
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
                pairs = [(a.arg, d) for a, d in zip(args, defaults + node.args.kw_defaults, strict=True)]
            for name, default in pairs:
                if name in ("max_bytes", "block_bytes") and default is not None:
                    if not (isinstance(default, ast.Name) and default.id == "BLOCK_BYTES"):
                        bad.append(f"{path.relative_to(SRC)}:{default.lineno}: {name} = {ast.unparse(default)}")
    assert not bad, "use attnx.config.BLOCK_BYTES:\n" + "\n".join(bad)


def test_the_block_size_and_its_cli_default() -> None:
    from attnx.cli.analyze import analyze, compare
    from attnx.config import BLOCK_BYTES

    assert BLOCK_BYTES == 64 << 20
    for command in (analyze, compare):
        (option,) = [p for p in command.params if p.name == "block_mb"]
        assert option.default == 64 and option.show_default, command.name


def test_writer_config_defaults_are_the_configs() -> None:
    from attnx.config import Config
    from attnx.store import WriterConfig

    cfg, writer = Config(), WriterConfig()
    assert (writer.commit_bytes, writer.commit_seconds, writer.flush_chunks) == (
        cfg.commit_bytes,
        cfg.commit_seconds,
        cfg.writer_flush_chunks,
    )
    from_cfg = WriterConfig.from_config(Config(commit_bytes=5, commit_seconds=2.0, writer_flush_chunks=3, io_threads=4))
    assert from_cfg == WriterConfig(commit_bytes=5, commit_seconds=2.0, flush_chunks=3, io_threads=4)


def test_one_codec_table() -> None:
    from attnx.store.layout import CODEC_CHOICES
    from attnx.stored_dtypes import CODECS

    assert CODEC_CHOICES == ("auto", *CODECS)
    copies = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line, items in string_lists(ast.parse(path.read_text()))
        if len(items) >= 3 and set(items) <= {"auto", *CODECS} and path.name != "stored_dtypes.py"
    ]
    assert not copies, "import attnx.stored_dtypes.CODECS:\n" + "\n".join(copies)
