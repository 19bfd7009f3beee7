"""What lossy (uint8) storage does to the analyses, measured once on real data, and the warnings that say so.

uint8 stores keep ``round(p * 255)``: every weight below 1/510 becomes 0 and the rest move by up to
1/510. Sums of weights barely change, but entropies (``-sum p ln p`` is steep near 0) and JS divergence
(logarithms of small weights) shift. Measured by ``tools/measure_uint8_shift.py``: the real
all-MiniLM-L6-v2 over the first 1,000 UD English EWT dev sentences, the same store extracted as float32
and as uint8, every feature mean compared per head (72 heads).
"""

from __future__ import annotations

from attnx.store import STORED_DTYPES, AttentionStore

# per-head |uint8 - float32| of the analysis means (MiniLM, 1,000 UD EWT dev sentences, 2026-11-29)
MEASURED_SHIFT = {
    "entropy": {"max_abs": 0.054, "mean_abs": 0.024, "max_rel": 0.54, "unit": "nats"},
    "cls_entropy": {"max_abs": 0.077, "mean_abs": 0.034, "max_rel": 1.0, "unit": "nats"},
    "js": {"max_abs": 0.022, "mean_abs": 0.011, "unit": "bits"},
    "distance": {"max_abs": 0.091, "mean_abs": 0.045, "max_rel": 0.018, "unit": "tokens"},
}
# every other feature (cls, sep, punct, self, prev, next, max_weight, own_segment) moved by < 3.2e-4
MEASURED_ON = "all-MiniLM-L6-v2, 1,000 UD English EWT dev sentences, uint8 vs float32 store"
SENSITIVE_FEATURES = ("entropy", "cls_entropy")


# q9..q16: the largest error of per-row entropy (bits) and of JS between heads (bits) over 600 real records of
# four corpora, by benchmarks/quant_analysis_error.py (results/quant_analysis_error.json)
MEASURED_QN = {"q10": (0.32, 0.038), "q12": (0.078, 0.0094), "q16": (0.0046, 4.6e-4)}


def is_lossy(store: AttentionStore) -> bool:
    """Quantised maps (uint8, q8..q16): small weights are stored as 0."""
    d = STORED_DTYPES.get(getattr(store, "dtype", ""))
    return bool(d and d.quantised) and getattr(store, "payload", "maps") == "maps"


def quantisation_warnings(store: AttentionStore, only: tuple[str, ...] = ("features", "similarity"),
                          metrics: tuple[str, ...] = ("js",)) -> list[str]:
    """One line per quantisation-sensitive result that ``only`` / ``metrics`` would compute on a uint8 store
    (empty for float16 / float32 stores), each with the shift measured on real data."""
    if not is_lossy(store):
        return []
    if store.dtype not in ("uint8", "q8"):
        step = STORED_DTYPES[store.dtype].max_abs_error
        measured = MEASURED_QN.get(store.dtype)
        shift = (
            f"; measured on real MiniLM maps: row entropy off by up to {measured[0]} bits, JS by up to {measured[1]}"
            if measured
            else ""
        )
        wanted = [x for x, on in (("entropy and cls_entropy", "features" in only),
                                  ("JS head similarity", "similarity" in only and "js" in metrics)) if on]
        if not wanted:
            return []
        return [
            f"{store.path}: {store.dtype} store: {' and '.join(wanted)} are sensitive to quantisation (weights "
            f"< {step:.2g} stored as 0){shift}; use a float16 store for these"
        ]
    out = []
    if "features" in only:
        e, c = MEASURED_SHIFT["entropy"], MEASURED_SHIFT["cls_entropy"]
        out.append(
            f"{store.path}: uint8 store: entropy and cls_entropy are sensitive to quantisation (weights < 1/510 "
            f"stored as 0); measured shift against float32 ({MEASURED_ON}): entropy up to {e['max_abs']} nats "
            f"(mean {e['mean_abs']}, up to {e['max_rel']:.0%} relative on low-entropy heads), cls_entropy up to "
            f"{c['max_abs']} nats (mean {c['mean_abs']}); re-extract with --dtype float16 for these"
        )
    if "similarity" in only and "js" in metrics:
        j = MEASURED_SHIFT["js"]
        out.append(
            f"{store.path}: uint8 store: JS head similarity is sensitive to quantisation; measured shift against "
            f"float32 ({MEASURED_ON}): up to {j['max_abs']} bits (mean {j['mean_abs']})"
        )
    return out


__all__ = ["MEASURED_SHIFT", "SENSITIVE_FEATURES", "is_lossy", "quantisation_warnings"]
