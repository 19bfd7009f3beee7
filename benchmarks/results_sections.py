"""One renderer per RESULTS.md table: each reads its result file(s) in ``benchmarks/results/`` and returns
markdown. Used by ``make_results.py`` (``{{table:NAME[:ARG]}}`` in the template) and by the harnesses that
print their own table. Pure functions of the files: no timing, no heavy imports.

Longer than most files: about 20 small renderers (``TABLES`` and the sections of the harnesses), one per table,
sharing a few formatting helpers; each harness's renderers sit under its own section comment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from attnx.bench import ceilings_table, markdown_table
from attnx.benchkit import fmt, spread


def _load(results: Path, name: str) -> dict:
    return json.loads((results / name).read_text())


def _load_each(results: Path, names: str) -> list[dict]:
    """The result files ``NAME.json`` of a comma-separated ``names``, in that order."""
    return [_load(results, f"{name}.json") for name in names.split(",")]


def _loads(load: list[float]) -> str:
    return f"{load[0]:.1f}-{load[1]:.1f}" if load else "not recorded"


def _md(head: str, align: str, rows: list[str]) -> str:
    """A markdown table: ``head`` and ``align`` are ``|``-separated cells (``---`` / ``---:``), ``rows`` the lines."""
    cells = [c.strip() for c in head.split("|")]
    return "\n".join([f"| {' | '.join(cells)} |", f"|{'|'.join(c.strip() for c in align.split('|'))}|", *rows])


def _machine(m: dict) -> str:
    flags = ", ".join(m.get("key_flags", [])) or "flags not recorded"
    return f"{m['cpu']}, {m['cores']} cores ({flags})"


# ----------------------------------------------------------------------------------------------------------
# extraction (bench_extract.py / attnx.bench) and the GPU check
# ----------------------------------------------------------------------------------------------------------
def extract_section(out: dict) -> str:
    m, st = out["machine"], out["lengths"]
    hw = m.get("gpu") or _machine(m)
    lines = [
        f"`{out.get('command', 'python benchmarks/bench_extract.py')}`: {hw}; torch {m.get('torch')}, "
        f"transformers {m.get('transformers')}, zarr {m.get('zarr')}, {m['when_utc']} UTC. Input: "
        f"{Path(out['input']).parent.parent.name}/{Path(out['input']).parent.name} sentences, first {st['n']} "
        f"lines, wordpieces mean {st['mean']:.1f} / median {st['median']:.0f} / p95 {st['p95']:.0f} / max "
        f"{st['max']}. {out['rounds']} rounds, every setting once per round in a fresh process (load the model, "
        f"warm up on {out['warmup_sentences']} sentences, then the timed steady state over all sentences); "
        f"median [min..max] over rounds; 1-minute load {_loads(out['load_1min'])} (read before and after every "
        "run).",
        "",
        markdown_table(out),
        "",
        "What each row times: "
        + "; ".join(f"*{r['label']}*: {r['what']}" for r in out["rows"] if r["kind"] != "attnx")
        + "; *attnx* rows: `attnx.extract` end to end into a store (the run summary's seconds: tokenizing, "
        "the model, copying, compressing, committing; model loading excluded). Start-up of an attnx row is its "
        "warm-up extraction's wall time minus that run's summary seconds: model loading, creating and "
        "finishing the store, and with bf16 compute the precision check against float32.",
        "",
        "Ceilings of each attnx row, sentences/s, measured in the same run (the lowest is in the table above): "
        "*compute only*: the same backend over the same batches, tokenized before the clock, nothing stored "
        "(same process, the faster of two passes just before the end-to-end run); *codec*: the row's own "
        "stored values through the store's codec pipeline (codec + crc32c, same chunks) into memory; *disk*: "
        f"a 256 MiB sequential write + fsync in the work folder ({fmt(out['disk_MBps'], 0)} MB/s), at the "
        "row's stored bytes per sentence.",
        "",
        ceilings_table(out),
        "",
        "Each ceiling is an upper bound by construction (the end-to-end run does all of its work and more); a "
        "row above 100% of its ceiling means the two runs met different loads from other jobs, which the "
        "spreads show.",
    ]
    mem = out.get("memory")
    if mem:
        lines += [
            "",
            (
                f"Memory (one run each; windows of {mem['window_records']} records in both): peak RSS "
                f"{mem['peak_rss_mb'][0]:.0f} MB on {mem['base_sentences']} sentences, {mem['peak_rss_mb'][1]:.0f} MB "
                f"on the same repeated to {mem['repeated_sentences']}; RSS at 10/25/50/75/100% of each run: "
                f"{mem['rss_profile_mb'][0]} and {mem['rss_profile_mb'][1]} MB (each process also ran its warm-up)."
            ),
        ]
    return "\n".join(lines)


def extract_table(results: Path, tag: str = "cpu") -> str:
    path = results / f"extract-{tag}.json"
    if not path.exists():
        return f"No result file {path.name}: not measured."
    return extract_section(_load(results, path.name))


def gpu_table(results: Path) -> str:
    """``results/gpu/`` holds what ``benchmarks/gpu_check.sh`` wrote to ``$OUT`` (parity.json, e2e.json,
    extract-gpu.json)."""
    folder = results / "gpu"
    parts = []
    if (folder / "parity.json").exists():
        rows = json.loads((folder / "parity.json").read_text())
        parts += [
            "fp16 attention on CUDA against float32 (`benchmarks/gpu_parity.py`, results/gpu/parity.json):",
            "",
            "| " + " | ".join(rows[0]) + " |",
            "|" + "---|" * len(rows[0]),
        ]
        parts += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows] + [""]
    if (folder / "e2e.json").exists():
        e = json.loads((folder / "e2e.json").read_text())
        parts += [
            "A CUDA fp16 store against float32 CPU maps of the same sentences (`benchmarks/gpu_e2e.py`, "
            "results/gpu/e2e.json):",
            "",
            f"{e['model']}, {e['records']} records, layers {e['layers']}, heads {e['heads']}, {e['batches']} batches "
            f"({e['budget_bytes']:,} B budget): max abs {e['max_abs_error']:.3e} (record {e['worst_record']}), mean "
            f"{e['mean_abs_error']:.2e}, bound {e['bound']:g}: {'PASS' if e['passed'] else 'FAIL'}",
            "",
        ]
    if (folder / "extract-gpu.json").exists():
        parts.append(extract_section(json.loads((folder / "extract-gpu.json").read_text())))
    if not parts:
        return (
            "No device run recorded (no results/gpu/extract-gpu.json or results/gpu/parity.json). "
            "`bash benchmarks/gpu_check.sh` writes both to `$OUT`; copy them to `benchmarks/results/gpu/`."
        )
    return "\n".join(parts).rstrip()


# ----------------------------------------------------------------------------------------------------------
# analysis kernels (bench_kernels.py), analyze ceilings, ablation
# ----------------------------------------------------------------------------------------------------------
def kernels_section(out: dict) -> str:
    st, m = out["store"], out["machine"]
    lines = [
        f"`{out['command']}`: {_machine(m)}, {m['numba_threads']} numba threads, {m['when_utc']} UTC; store: "
        f"{st['path']} ({st['records']} records, mean l {st['mean_length']:.1f}, {st['layers']}x{st['heads']} heads, "
        f"{st['dtype']}). {out['repeats']} rounds after a warm-up, kernels and references interleaved; median "
        f"[min..max]; 1-minute load {_loads(out['load_1min'])}. Memory copy on this machine: "
        f"{m['memcpy_gb_s']:.1f} GB/s (for scale, not a ceiling).",
        "",
        "| kernel | MB/s (wall) | maps/s (wall) | MB per CPU-s | numpy reference MB/s (records) | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in out["kernels"]:
        ref = f"{fmt(r['ref_mb_s'], 2)} ({r['ref_records']})" if "ref_mb_s" in r else "-"
        lines.append(
            f"| {r['kernel']} | {fmt(r['mb_s'])} | {r['maps_s']['median']:,.0f} | "
            f"{r['mb_per_cpu_s']['median']:,.0f} | {ref} | {fmt(r.get('speedup'), 0)} |"
        )
    if out.get("memory"):
        lines += [
            "",
            "Flat memory: a synthetic store of tiny records (1 layer x 2 heads) written through the store "
            "API and analysed in 16 MB blocks, each size in a fresh process:",
            "",
        ]
    for mm in out.get("memory") or []:
        lines.append(
            f"- {mm['records']:,} records ({mm['attn_mb']:.0f} MB float16) analysed in {mm['analyze_s']:.1f} s; "
            f"peak RSS {mm['peak_rss_mib']} MiB; RSS before {mm['rss_before_mib']} MiB, at progress "
            + ", ".join(f"{k}: {v}" for k, v in mm["rss_mib_at_progress"].items())
        )
    return "\n".join(lines)


def kernels_table(results: Path) -> str:
    return kernels_section(_load(results, "kernels.json"))


def ablation_section(report: dict) -> str:
    n_cfg = report["configurations"]
    lines = [
        f"`{report['command']}`: {_machine(report['machine'])}, {report['machine']['when_utc']} UTC; "
        f"{report['model']} ({report['layers']}x{report['heads']}), {report['examples']} examples (mean "
        f"{report['mean_wordpieces']:.1f} wordpieces), {n_cfg} configurations, mode {report['mode']}, "
        f"{report['device']} {report['dtype']}; {report['repeats']} rounds after a warm-up, variants interleaved; "
        f"median [min..max]; 1-minute load {_loads(report['load_1min'])}.",
        "",
        "| variant | work (example x configuration) | seconds | example-configs/s | speed-up vs sequential "
        "(same work, same round) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        if "extrapolated_seconds_all_configs" in r:
            lines.append(
                f"| {name} (reference) | {r['example_configs']} (1/{n_cfg} of the others) | "
                f"{fmt(r['seconds'], 2)}; for all {n_cfg} configurations, extrapolated: "
                f"{fmt(r['extrapolated_seconds_all_configs'], 1)} | {fmt(r['per_s'])} | "
                f"rate {fmt(r['rate_vs_sequential'], 2)}x |"
            )
        else:
            lines.append(
                f"| {name} | {r['example_configs']} | {fmt(r['seconds'], 2)} | {fmt(r['per_s'])} | "
                f"{fmt(r['rate_vs_sequential'], 2)}x |"
            )
    agree = ", ".join(f"{k} {v:g}" for k, v in report["max_abs_logit_diff_vs_sequential"].items())
    lines += ["", f"Max |logit difference| against sequential: {agree}."]
    return "\n".join(lines)


def ablation_table(results: Path) -> str:
    return ablation_section(_load(results, "ablation.json"))


def analyze_ceilings_table(results: Path) -> str:
    d = _load(results, "analyze_ceilings.json")
    names = {
        "decode_1_thread": "decode, 1 reader thread",
        "decode_2_threads": "decode, 2 reader threads",
        "kernels": "kernels (blocks in memory)",
        "end_to_end": "`analyze --only features,patterns` end to end",
    }
    rows = []
    for key, label in names.items():
        s = d["summary"][key]
        rows.append(
            f"| {label} | {fmt(s['gb_per_s'], 2)} | {fmt(s['steady_gb_per_s'], 2)} | "
            f"{s['core_s_per_gb']['median']:.2f} | {s['startup_s']['median']:.3f} |"
        )
    return _md(
        "run | GB/s, whole run | GB/s, steady state | core-seconds per GB | start-up s",
        "--- | ---: | ---: | ---: | ---:",
        rows,
    )


def read_path_table(results: Path) -> str:
    """bench_read_path.py: the numcodecs ceiling, attnx's reader (and zarr's path) and analyze, same run."""
    d = _load(results, "read_path.json")
    names = {
        "numcodecs_1": "ceiling: numcodecs blosc decode of the chunks in memory, 1 thread",
        "numcodecs_2": "ceiling: the same, 2 threads",
        "attnx_1": "attnx `blocks(reuse=True)` (maps' values checked), 1 reader thread",
        "attnx_2": "attnx, 2 reader threads",
        "attnx_1_unchecked": "attnx `blocks(reuse=True, check_maps=False)` (what analyze reads), 1 thread",
        "attnx_2_unchecked": "the same, 2 reader threads",
        "zarr_path_1": "attnx_1 (values checked) through zarr's codec pipeline (issue 19's freed-page setting on)",
        "analyze": "`analyze --only features,patterns` end to end",
    }
    rows = []
    for key, label in names.items():
        if key not in d["summary"]:
            continue  # a result file from before the unchecked rows
        s = d["summary"][key]
        shares = d.get("attnx_unchecked_share_of_ceiling" if key.endswith("_unchecked") else "attnx_share_of_ceiling")
        t = key.split("_")[1] if key.startswith("attnx_") else None
        share = shares.get(t) if (t and shares) else None
        rows.append(
            f"| {label} | {fmt(s['gb_per_s'], 2)} | {fmt(s['core_s_per_gb'], 2)} | {fmt(share, 2) if share else '-'} |"
        )
    return _md(
        "run | GB/s of stored float16 | core-seconds per GB | attnx / ceiling, same threads, per round",
        "--- | ---: | ---: | ---:",
        rows,
    )


def startup_table(results: Path) -> str:
    """bench_startup.py: attnx extract against the careful transformers script, split per phase."""
    d = _load(results, "startup.json")
    rows = []
    tools = [("attnx", "`attnx extract`"), ("careful", "careful transformers script")]
    if d.get("before"):
        tools.append(("before", "`attnx extract`, tree before the change"))
    for n, s in d["summary"].items():
        for tool, label in tools:
            t = s[tool]
            rows.append(
                f"| {int(n):,} | {label} | {fmt(t['wall'], 1)} | {fmt(t['startup'], 1)} | "
                f"{fmt(t['first_record'], 1)} | {fmt(t['loop'], 1)} | {fmt(t['finish'], 1)} |"
            )
        ratio = fmt(s["careful_over_attnx_wall"], 2, "x")
        rows.append(f"| {int(n):,} | careful / attnx, whole process, per round | {ratio} | | | | |")
        if "before_over_attnx_wall" in s:
            ratio = fmt(s["before_over_attnx_wall"], 2, "x")
            rows.append(f"| {int(n):,} | before / attnx, whole process, per round | {ratio} | | | | |")
    return _md(
        "sentences | run | whole process s | start-up s | first record s | loop s | finish s",
        "---: | --- | ---: | ---: | ---: | ---: | ---:",
        rows,
    )


# ----------------------------------------------------------------------------------------------------------
# store writer and A/B extraction (issue 9's store change)
# ----------------------------------------------------------------------------------------------------------
def writer_table(results: Path) -> str:
    rows = [
        f"| {r['threads']} | {fmt(r['records_per_s'], 0)} | {fmt(r['raw_gb_per_s'], 2)} | "
        f"{fmt(r['codec_ceiling_gb_per_s'], 2)} | {fmt(r['disk_ceiling_gb_per_s'], 2)} | "
        f"{r['fraction_of_lower_ceiling']:.0%} | {r['commits']} | {r['metadata_bytes'] / 1e3:.0f} kB |"
        for r in _load(results, "writer.json")["rows"]
    ]
    return _md(
        "zarr threads | records/s | GB/s raw | codec ceiling GB/s | disk ceiling GB/s | of lower ceiling | "
        "commits | snapshot + manifest bytes",
        "---|---|---|---|---|---|---|---",
        rows,
    )


def writer_io_table(results: Path, name: str = "writer_io.json") -> str:
    """bench_writer.py's writer_io.json (or ``name``): ceilings and the writer on 1 and 2 I/O threads, per model
    shape, with the A/B columns where the run had ``--before``."""
    from bench_writer import table

    return table(_load(results, name))


def host_table(results: Path) -> str:
    """``attnx bench host``'s host.json: CPU core-seconds per GB of each stage."""
    from attnx.bench_host import STAGES

    d = _load(results, "host.json")
    rows = [f"| {s} | {d['cpu_seconds'][s]:.2f} | {d['core_s_per_gb'][s]:.2f} |" for s in STAGES]
    rows.append(f"| **host total** | {d['cpu_seconds']['host total']:.2f} | {d['core_s_per_gb_host']:.2f} |")
    replay = d["cpu_seconds"]["replay (device stand-in)"]
    rows.append(f"| replay (stands in for the device; not counted) | {replay:.2f} | |")
    return _md("stage | CPU seconds | core-seconds per GB", "---|---:|---:", rows)


def host_ab_table(results: Path) -> str:
    """host_ab.json: ``attnx bench host`` of two trees in interleaved rounds, rate and core-s/GB per stage."""
    d = _load(results, "host_ab.json")
    rows = [
        f"| sentences/s | {fmt(d['a_sentences_per_s'], 0)} | {fmt(d['b_sentences_per_s'], 0)} |",
        f"| GB/s of raw float16 | {fmt(d['a_raw_gb_per_s'], 3)} | {fmt(d['b_raw_gb_per_s'], 3)} |",
        *(
            f"| {stage}, core-s/GB | {fmt(d['a_core_s_per_gb'][stage], 2)} | {fmt(d['b_core_s_per_gb'][stage], 2)} |"
            for stage in d["a_core_s_per_gb"]
        ),
        f"| host total, core-s/GB | {fmt(d['a_core_s_per_gb_host'], 2)} | {fmt(d['b_core_s_per_gb_host'], 2)} |",
    ]
    return _md(f"median [min..max] | A: {d['a']} | B: {d['b']}", "---|---:|---:", rows)


def projection_table(results: Path) -> str:
    """Cores a host needs for BERT-base float16 at 5k/10k/20k sentences/s, from host.json's core-s per GB."""
    p = _load(results, "host.json")["projection"]
    rows = [f"| {int(r):,} | {int(r) * p['bytes_per_sentence'] / 1e9:.2f} | {c:.1f} |" for r, c in p["cores"].items()]
    return _md("sentences/s | GB/s of float16 | cores", "---:|---:|---:", rows)


def ab_table(results: Path, name: str = "ab-icechunk-store.json") -> str:
    d = _load(results, name)
    rows = {"a": "format 1 (plain Zarr, commit marker)", "b": "format 2 (Icechunk), this change"}
    lines = ["| store | median sent/s | runs |", "|---|---|---|"]
    for k, label in rows.items():
        lines.append(f"| {label} | {d['median'][k]:.1f} | {', '.join(f'{v:.1f}' for v in d['sentences_per_s'][k])} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# stored dtypes and codecs (bench_codecs.py, quant_analysis_error.py), decoding threads
# ----------------------------------------------------------------------------------------------------------
CODEC_ROWS = [  # (dtype, codec in codecs.json, shown as, note); the defaults are attnx.stored_dtypes.DTYPES'
    ("float16", "blosc-lz4-bit-5", "**blosc-lz4 + bit-shuffle**", ""),
    ("float16", "blosc-zstd-bit-9", "blosc-zstd-9 + bit-shuffle", " (fewest bytes)"),
    ("uint8", "zstd-1", "**zstd-1**", ""),
    ("uint8", "blosc-zstd-bit-3", "blosc-zstd-3 + bit-shuffle", ""),
    ("q9", "blosc-zstd-bit-5", "**blosc-zstd-5 + bit-shuffle**", ""),
    ("q10", "blosc-zstd-bit-5", "**blosc-zstd-5 + bit-shuffle**", ""),
    ("q10", "blosc-zstd-bit-3", "blosc-zstd-3 + bit-shuffle", ""),
    ("q10", "blosc-zstd-bit-1", "blosc-zstd-1 + bit-shuffle", ""),
    ("q10", "blosc-zstd-bit-9", "blosc-zstd-9 + bit-shuffle", ""),
    ("q10", "pcodec-8", "pcodec level 8", ""),
    ("q10", "blosc-lz4-bit-5", "blosc-lz4 + bit-shuffle", ""),
    ("q10", "zstd-1", "zstd-1", ""),
    ("q11", "blosc-zstd-bit-5", "**blosc-zstd-5 + bit-shuffle**", ""),
    ("q12", "blosc-zstd-bit-5", "**blosc-zstd-5 + bit-shuffle**", ""),
    ("q16", "blosc-zstd-bit-5", "**blosc-zstd-5 + bit-shuffle**", ""),
]


def codecs_table(results: Path) -> str:
    d = _load(results, "codecs.json")
    summary = {(s["dtype"], s["codec"]): s for s in d["summary"]}
    f16 = summary[("float16", "blosc-lz4-bit-5")]["per_corpus_bits"]
    lines = [
        "| dtype | codec | bits/value | of float16 store (worst corpus) | max abs error | order-0 entropy "
        "| encode MB/s, 1 core | decode MB/s, 1 core |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype, codec, shown, note in CODEC_ROWS:
        s = summary[(dtype, codec)]
        worst = max(s["per_corpus_bits"][c] / f16[c] for c in f16)
        lines.append(
            f"| {dtype} | {shown}{note} | {s['bits_per_value']:.2f} | {s['of_float16_store']:.1%} "
            f"({worst:.1%}) | {s['max_abs_error']:.2e} | {s['entropy0_bits']:.2f} | "
            f"{s['encode_mbs']:,.0f} | {s['decode_mbs']:,.0f} |"
        )
    return "\n".join(lines)


def quant_error_table(results: Path) -> str:
    rows = [
        f"| {r['dtype']} | {r['max_abs_error']:.3g} | {r['row_entropy_max_abs_bits']:.2g} | "
        f"{r['row_entropy_mean_abs_bits']:.2g} | {r['map_mean_entropy_max_abs_bits']:.2g} | "
        f"{r['js_next_head_max_abs_bits']:.2g} | {r['argmax_changed_fraction']:.3%} |"
        for r in _load(results, "quant_analysis_error.json")["rows"]
    ]
    return _md(
        "dtype | max abs error | row entropy max error (bits) | mean | map mean entropy max error | "
        "JS(next head) max error | row argmax changed",
        "---|---:|---:|---:|---:|---:|---:",
        rows,
    )


READ_MODES = {
    "serial": "serial (concurrency 1, 1 worker), 8-chunk reads",
    "zarr-default": "zarr defaults, 8-chunk reads",
    "zarr-2": "zarr, 2 workers, concurrency 2",
    "pool-2": "`ordered_map`, 2 threads, 1 chunk each",
    "serial+f32": "serial, + float32 conversion",
    "zarr-default+f32": "zarr defaults, + float32 conversion after",
    "pool-2+f32": "`ordered_map` 2 threads, float32 conversion in the worker",
}


def read_threads_table(results: Path) -> str:
    runs = [("read_threads_run1.json", "run 1"), ("read_threads.json", "run 4")]
    data = [(_load(results, f), label) for f, label in runs]
    # load_before / load_after: os.getloadavg() (1, 5, 15 minutes) at the start and end of the run
    head = " | ".join(
        f"{label} ({d['repeats']} reps, load {d['load_before'][0]:.1f} -> {d['load_after'][0]:.1f})"
        for d, label in data
    )
    lines = [f"| dtype | mode | {head} |", "|---|---|" + "---:|" * len(data)]
    for r in data[0][0]["rows"]:
        cells = []
        for d, _ in data:
            x = next(y for y in d["rows"] if y["dtype"] == r["dtype"] and y["mode"] == r["mode"])
            cells.append(f"{x['stored_gbs']:.2f} [{x['spread'][0]:.2f}-{x['spread'][1]:.2f}]")
        lines.append(f"| {r['dtype']} | {READ_MODES.get(r['mode'], r['mode'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def structure_table(results: Path, name: str = "structure_model.json") -> str:
    """Context-sorted values (structure_model.py): ideal and real savings, decode speeds, per corpus and dtype."""
    rows = []
    for r in _load(results, name)["rows"]:
        z = r["codecs"]["blosc-zstd-bit-5"]
        rows.append(
            f"| {r['corpus']} | {r['dtype']} | {r['entropy0_bits']:.2f} | {r['conditional_entropy_bits']:.2f} "
            f"| {r['saving_vs_best_plain']:.1%} | {r['transform_decode_mbs']:.0f} | "
            f"{z['plain_decode_mbs']:,.0f} / {z['sorted_decode_mbs']:,.0f} |"
        )
    return _md(
        "corpus | dtype | order-0 entropy bits | conditional entropy bits | saving vs best plain codec | "
        "un-sort MB/s | blosc-zstd-5 decode MB/s: plain / sorted",
        "---|---|---:|---:|---:|---:|---",
        rows,
    )


# ----------------------------------------------------------------------------------------------------------
# scale-out (bench_scale.py)
# ----------------------------------------------------------------------------------------------------------
def scale_throughput_table(results: Path) -> str:
    out = _load(results, "scale_throughput.json")
    base = out["sent_per_s"]["1 worker x 1 thread"]["median"]
    rows = []
    for name, v in out["sent_per_s"].items():
        start = out["startup_s"].get(name)
        rows.append(
            f"| {name} | {v['median']:.1f} [{v['min']:.1f}..{v['max']:.1f}] | {v['median'] / base:.2f} | "
            + (f"{start['median']:.1f} |" if start else "- |")
        )
    head = "setting | sentences/s, median [min..max] | x 1 worker x 1 thread | cluster start + model loads, s"
    return _md(head, "---|---:|---:|---:", rows)


def scale_commits_table(results: Path) -> str:
    out = _load(results, "scale_commits.json")
    rows = [
        f"| {r['shards']:,} | {r['commit_ms_median_last50']:.0f} (max {r['commit_ms_max_last50']:.0f}) | "
        f"{r['metadata'] / 1e6:.2f} | {r['manifests'] / 1e6:.2f} | {r['snapshots'] / 1e6:.2f} | "
        f"{r['chunks'] / 1e6:.1f} | {r['load_1min']:.1f} |"
        for r in out["rows"]
    ]
    head = (
        "shards merged | commit ms, median of the last 50 | metadata MB | of which manifests | snapshots | "
        "chunks MB | load"
    )
    return _md(head, "---:|---:|---:|---:|---:|---:|---:", rows)


def scale_coordinator_table(results: Path) -> str:
    out = _load(results, "scale_coordinator.json")
    runs = out["runs"]
    phases = sorted({k for r in runs for k in r["per_shard_ms"]})
    rows = [f"| {k} | " + " | ".join(f"{r['per_shard_ms'].get(k, 0.0):.2f}" for r in runs) + " |" for k in phases]
    rows.append("| commits | " + " | ".join(str(r["commits"]) for r in runs) + " |")
    rows.append("| load | " + " | ".join(f"{r['load_1min']:.1f}" for r in runs) + " |")
    head = "ms per shard | " + " | ".join(f"run {k + 1}" for k in range(len(runs)))
    return _md(head, "---|" + "|".join("---:" for _ in runs), rows)


TABLES = {
    "scale_throughput": scale_throughput_table,
    "scale_commits": scale_commits_table,
    "scale_coordinator": scale_coordinator_table,
    "structure": structure_table,
    "extract": extract_table,
    "gpu": gpu_table,
    "kernels": kernels_table,
    "ablation": ablation_table,
    "analyze_ceilings": analyze_ceilings_table,
    "writer": writer_table,
    "writer_io": writer_io_table,
    "host_ab": host_ab_table,
    "host": host_table,
    "projection": projection_table,
    "ab": ab_table,
    "codecs": codecs_table,
    "quant_error": quant_error_table,
    "read_threads": read_threads_table,
    "read_path": read_path_table,
    "startup": startup_table,
}


# ----------------------------------------------------------------------------------------------------------
# the million-sentence soak (bench_million.py)
# ----------------------------------------------------------------------------------------------------------
def million_table(results: Path, name: str = "million.json") -> str:
    """The soak's (or a smoke run's) commands on the finished and prefix stores, then the issue's targets."""
    out = _load(results, name)
    full, prefix = out["full"]["steps"], out["prefix"]["steps"]

    def cell(step: dict | None) -> str:
        if step is None:
            return "- | -"
        gbps = f", {step['gb_per_s_raw']:.3f} GB/s" if "gb_per_s_raw" in step else ""
        return f"{step['seconds']:.2f}{gbps} | {step['peak_rss_bytes'] / 1e6:,.0f}"

    rows = [f"| {k} | {cell(v)} | {cell(prefix.get(k))} |" for k, v in full.items()]
    for r in out["extract"]["runs"]:
        rows.append(f"| extract ({r['phase']}) | {r['seconds']:.1f} | {r['peak_rss_bytes'] / 1e6:,.0f} | - | - |")
    so, c = out.get("stats_only"), out.get("compact")
    if so:
        rows.append(f"| extract --stats-only | {so['seconds']:.1f} | {so['peak_rss_bytes'] / 1e6:,.0f} | - | - |")
    else:
        rows.append("| extract --stats-only | not run yet | - | - | - |")
    if c:
        rows.append(f"| compact | {c['seconds']:.2f} | {c['peak_rss_bytes'] / 1e6:,.0f} | - | - |")
    else:
        rows.append("| compact | not run yet | - | - | - |")
    fb, pb = out["full"]["bytes"], out["prefix"]["bytes"]
    head = (
        f"command | {fb['records']:,}-record store: s | peak RSS MB | {pb['records']:,}-record prefix store: s | "
        "peak RSS MB"
    )
    steps = _md(head, "---|---:|---:|---:|---:", rows)

    def value(t: dict) -> str:
        return "-" if t["value"] is None else f"{t['value']:.3g} {t['unit']}"

    met = {True: "yes", False: "**no**", None: "not measured"}
    trows = [f"| {t['target']} | {value(t)} | {t['limit']:.3g} | {met[t['met']]} |" for t in out.get("targets", [])]
    goals = _md("target | value | limit | met", "---|---:|---:|---", trows)
    return f"{steps}\n\n{goals}"


TABLES["million"] = million_table


def million_soak_table(results: Path, name: str = "million.json") -> str:
    """The soak, whole or partial (``bench_million.py --write-partial``): its extraction decile by decile (rate,
    peak RSS, metadata bytes, load), the resume, and the commands on the finished store where they have run."""
    out = _load(results, name)
    ext = out["extract"]
    n = out["n"]
    commits = [(run["phase"], c) for run in ext["runs"] for c in run["commits"] if c["records"]]
    rows = []
    for d in range(10):
        lo, hi = d * n // 10, (d + 1) * n // 10
        # the commits of one process whose records fall in this decile (a span never crosses the kill)
        span = [(p, c) for p, c in commits if lo <= c["records"] <= hi]
        rate = "-"
        for phase in dict.fromkeys(p for p, _ in span):
            cs = [c for p, c in span if p == phase]
            if len(cs) >= 2 and cs[-1]["t"] > cs[0]["t"]:
                r = (cs[-1]["records"] - cs[0]["records"]) / (cs[-1]["t"] - cs[0]["t"])
                rate = f"{r:.1f}" if rate == "-" else f"{rate}, {r:.1f}"
        cs = [c for _, c in span]
        if not cs:
            rows.append(f"| {d * 10}-{d * 10 + 10}% | - | - | - | - | - |")
            continue
        loads = [c["load_1min"] for c in cs if c.get("load_1min") is not None]
        rows.append(
            f"| {d * 10}-{d * 10 + 10}% | {len(cs)} | {rate} | {max(c['rss_bytes'] for c in cs) / 1e6:,.0f} | "
            f"{cs[-1]['metadata_bytes'] / 1e6:,.1f} | "
            + (f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-")
            + " |"
        )
    deciles = _md(
        "records | commits | sentences/s between its commits (per process) | peak RSS MB (sampled) | "
        "metadata MB after | 1-min load",
        "---|---:|---:|---:|---:|---",
        rows,
    )
    runs = _md(
        "process | seconds | commits | peak RSS MB (wait4) | first chunk after s | first commit after s | "
        "killed at records",
        "---|---:|---:|---:|---:|---:|---:",
        [
            f"| {r['phase']} | {r['seconds']:.0f} | {len(r['commits'])} | {r['peak_rss_bytes'] / 1e6:,.0f} | "
            f"{r['first_chunk_s'] or 0:.1f} | {r['first_commit_s'] or 0:.1f} | "
            f"{r['killed_at_records'] if r['killed_at_records'] is not None else '-'} |"
            for r in ext["runs"]
        ],
    )
    parts = [deciles, runs]
    if out.get("full") and out.get("prefix"):
        parts.append(million_table(results, name))
    missing = out.get("missing_steps") or []
    if missing:
        parts.append("Not run yet: " + ", ".join(missing) + " (`bench_million.py --work DIR --continue`).")
    return "\n\n".join(parts)


TABLES["million_soak"] = million_soak_table


def workers_table(results: Path) -> str:
    """bench_workers.py: one process against ``--workers 2`` with the defaults, per input size."""
    out = _load(results, "workers.json")
    rows = []
    for n, s in out["results"].items():
        for k in ("1 process", "2 workers"):
            shards = f"{s['shard_records']:,}" if k == "2 workers" and s["shard_records"] else "-"
            rows.append(
                f"| {int(n):,} | {k} | {s['rounds']} | {fmt(s['wall_s'][k], 1)} | {fmt(s['sentences_per_s'][k], 1)} | "
                f"{shards} |"
            )
        rows.append(
            f"| {int(n):,} | **2 workers / 1 process** | | **{fmt(s['speedup_whole'], 2)}x** | "
            f"**{fmt(s['speedup_run'], 2)}x** | |"
        )
    return _md(
        "sentences | run | rounds | whole process s | sentences/s in the run (model load excluded) | shard records",
        "---:|---|---:|---:|---:|---:",
        rows,
    )


TABLES["workers"] = workers_table


def workers_split_table(results: Path) -> str:
    """bench_workers.py --split N: the configurations that split two workers' extra time, median [min..max]."""
    out = _load(results, "workers_split.json")
    n = out["n"]
    keys = ("1 process, 8 sentences", "2 workers, 8 sentences", f"1 process, {n:,}", f"2 workers, {n:,}, 2 shards")
    one8, two8, one, two_shards = ([x["wall_s"] for x in out["runs"][k]] for k in keys)
    rest = [c - b - (t - a) for a, t, b, c in zip(one8, two8, one, two_shards, strict=True)]
    rows = [f"| {k} | {fmt(v, 1)} |" for k, v in out["wall_s"].items()]
    rows += [
        f"| two workers' extra time at {out['n']:,} (planned shards - 1 process), per round | "
        f"**{fmt(out['gap_s'], 1)}** |",
        f"| of which the cluster's fixed cost (2 workers - 1 process, 8 sentences) | {fmt(out['fixed_s'], 1)} |",
        f"| of which the planned {out['planned_shard_records']:,}-record shards against two shards | "
        f"{fmt(out['shards_s'], 1)} |",
        f"| the rest (2 workers with two shards - 1 process - the fixed cost) | {fmt(spread(rest), 1)} |",
    ]
    return _md("run | whole process s", "---|---:", rows)


TABLES["workers_split"] = workers_split_table


def batch_tokens_table(results: Path, names: str) -> str:
    """bench_batch_tokens.py: extraction speed per CPU cap on padded tokens per batch, one block per file."""
    rows = []
    for out in _load_each(results, names):
        for v in out["values"]:
            s = out["per_value"][str(v)]
            rows.append(
                f"| {out['model']}, {out['sentences']:,} sentences, {out['rounds']} rounds | {v:,} | {s['batches']} | "
                f"{fmt(s['sentences_per_s'], 1)} | {fmt(s['wall_s'], 1)} | {fmt(s['speed_vs_largest'], 2)}x |"
            )
    return _md(
        "run | padded tokens per batch (cap) | batches | sentences/s in the run | whole process s | "
        "speed / the largest cap's, per round",
        "---|---:|---:|---:|---:|---:",
        rows,
    )


TABLES["batch_tokens"] = batch_tokens_table


def heap_growth_shapes_table(results: Path) -> str:
    """bench_heap_growth.py shapes: live heap over distinct batch shapes, per oneDNN primitive-cache setting."""
    out = _load(results, "heap_growth_shapes.json")
    rows = []
    for name, run in out["runs"].items():
        new = [r for r in run["rows"] if r["phase"] == "new"]
        again = [r for r in run["rows"] if r["phase"] == "repeat"]
        at_half = min(new, key=lambda r: abs(r["passes"] - run["shapes"] // 2))
        rows.append(
            f"| {name} | {run['env'] or 'unset'} | {new[0]['live_mb']:.0f} | {at_half['live_mb']:.0f} | "
            f"{new[-1]['live_mb']:.0f} | {again[-1]['live_mb']:.0f} | {run['seconds_new']:.1f} | "
            f"{run['seconds_repeat']:.1f} |"
        )
    head = out["runs"][next(iter(out["runs"]))]
    return _md(
        f"oneDNN primitive cache | ONEDNN_PRIMITIVE_CACHE_CAPACITY | live MB after 100 new shapes | after "
        f"{head['shapes'] // 2:,} | after {head['shapes']:,} | after {head['repeats']} repeats | "
        f"s, {head['shapes']:,} new | s, {head['repeats']} repeats",
        "---|---:|---:|---:|---:|---:|---:|---:",
        rows,
    )


TABLES["heap_growth_shapes"] = heap_growth_shapes_table


def heap_growth_extract_table(results: Path, names: str) -> str:
    """bench_heap_growth.py extract: live heap and RSS over a run, one row per (file, setting)."""
    rows = []
    for out in _load_each(results, names):
        for setting, run in out["runs"].items():
            r = run["rows"]
            fit = r[2:-1]  # after the first windows, before the last batch (the run's end)
            slope = np.polyfit([x["records"] for x in fit], [x["live_mb"] for x in fit], 1)[0] * 1e5
            rows.append(
                f"| {run.get('payload', 'stats')} | {run['heap']} | {setting} | {r[-1]['records']:,} | "
                f"{fit[0]['live_mb']:.0f} -> {fit[-1]['live_mb']:.0f} | {slope:+.1f} | "
                f"{fit[0]['rssanon_mb']:.0f} -> {fit[-1]['rssanon_mb']:.0f} | "
                f"{fit[0]['arena_mb']:.0f} -> {fit[-1]['arena_mb']:.0f} |"
            )
    return _md(
        "payload (backend) | glibc heap | oneDNN cache | records | live MB, 12,288 -> next to last | "
        "MB per 10^5 records (fit) | anonymous RSS MB | glibc arena MB (address space)",
        "---|---|---|---:|---:|---:|---:|---:",
        rows,
    )


TABLES["heap_growth_extract"] = heap_growth_extract_table


def heap_growth_commits_table(results: Path) -> str:
    """bench_heap_growth.py commits: live heap over hundreds of commits, per Icechunk cache setting."""
    out = _load(results, "heap_growth_commits.json")
    rows = []
    for setting, run in out["runs"].items():
        r = run["rows"]
        at = [r[min(k, len(r) - 2)] for k in (20, len(r) // 2, len(r) - 2)]
        rows.append(
            f"| {setting} | {run['records']:,} | {run['commits']} | "
            + " | ".join(f"{x['live_mb']:.0f}" for x in at)
            + f" | {run['live_mb_slope']:+.1f} | {at[-1]['rssanon_mb']:.0f} | {r[-1]['seconds']:.1f} |"
        )
    r0 = out["runs"][next(iter(out["runs"]))]["rows"]
    marks = [r0[min(k, len(r0) - 2)]["batches"] for k in (20, len(r0) // 2, len(r0) - 2)]
    return _md(
        "Icechunk caches | records | commits | "
        + " | ".join(f"live MB after {m} commits" for m in marks)
        + " | MB per 100 commits (fit) | anonymous RSS MB at the end | s",
        "---|---:|---:|---:|---:|---:|---:|---:|---:",
        rows,
    )


TABLES["heap_growth_commits"] = heap_growth_commits_table


def million_recheck_table(results: Path) -> str:
    """bench_million.py --recheck: the commands a fix changed, on the soak's stores, median [min..max]."""
    out = _load(results, "million_recheck.json")
    names = list(dict.fromkeys(n for by in out["summary"].values() for n in by))
    head = "store | records | commits | " + " | ".join(f"{n}: s" for n in names)
    rows = []
    for tag, by in out["summary"].items():
        b = out["stores"][tag]
        cells = [fmt(by[n]["seconds"], 2) if n in by else "-" for n in names]
        rows.append(f"| {tag} | {b['records']:,} | {b['commits']} | " + " | ".join(cells) + " |")
    return _md(head, "---|---:|---:|" + "|".join("---:" for _ in names), rows)


TABLES["million_recheck"] = million_recheck_table


def startup_projection_table(results: Path) -> str:
    """Stop 27's whole-process runs with this run's attnx start-up in place of stop 27's: what the start-up change
    alone would have given on that (faster) hour. whole' = whole - start-up(stop 27) + start-up(this run)."""
    old, new = _load(results, "startup_stop27.json")["summary"], _load(results, "startup.json")["summary"]
    rows = []
    for n in old:
        if n not in new:
            continue
        a, c = old[n]["attnx"], old[n]["careful"]
        whole = a["wall"]["median"] - a["startup"]["median"] + new[n]["attnx"]["startup"]["median"]
        rows.append(
            f"| {int(n):,} | {a['wall']['median']:.1f} | {a['startup']['median']:.1f} | "
            f"{new[n]['attnx']['startup']['median']:.1f} | {whole:.1f} | {c['wall']['median']:.1f} | "
            f"{old[n]['careful_over_attnx_wall']['median']:.2f}x | {c['wall']['median'] / whole:.2f}x |"
        )
    return _md(
        "sentences | stop 27 attnx whole s | its start-up s | this run's start-up s | whole with it s | "
        "stop 27 script s | ratio then | ratio with it",
        "---: | ---: | ---: | ---: | ---: | ---: | ---: | ---:",
        rows,
    )


TABLES["startup_projection"] = startup_projection_table
