"""The names of the map features and the attention pattern types, in one module with no imports: the extraction
engine writes ``--stats-only`` stores in this feature order and must not pay for compiling the analysis stack; the
kernels, the analysis results, the torch twin (:mod:`attnx.engine.stats`) and the report all read them here."""

from __future__ import annotations

# Per-map row-sum features (Kovaleva et al. 2019 §4; Clark et al. 2019 §3), in the order the kernels, the
# --stats-only payload and every ``(..., NF)`` array use (see attnx.kernels.features for the definitions).
MAP_FEATURES: tuple[str, ...] = (
    "cls", "sep", "sep_max", "punct", "self", "prev", "next", "distance",
    "entropy", "cls_entropy", "max_weight", "own_segment", "col_max", "col_top3",
    "band2", "col_sq", "seg_block", "map_max",
)  # fmt: skip
NF = len(MAP_FEATURES)
F: dict[str, int] = {name: k for k, name in enumerate(MAP_FEATURES)}  # feature name -> index on the last axis

# features.csv columns after layer, head (the public contract): the first twelve features, with the title and
# unit the report plots them under.
FEATURE_TITLES: dict[str, tuple[str, str]] = {
    "cls": ("Attention to [CLS]", "mean weight"),
    "sep": ("Attention to [SEP] (all)", "mean weight"),
    "sep_max": ("Attention to the most-attended [SEP]", "mean weight"),
    "punct": ("Attention to punctuation", "mean weight"),
    "self": ("Attention to the token itself", "mean weight"),
    "prev": ("Attention to the previous token", "mean weight"),
    "next": ("Attention to the next token", "mean weight"),
    "distance": ("Mean attention distance |i - j|", "tokens"),
    "entropy": ("Row entropy", "nats"),
    "cls_entropy": ("Entropy of the [CLS] row", "nats"),
    "max_weight": ("Max weight per row (confidence)", "mean weight"),
    "own_segment": ("Attention within own segment (pairs)", "mean weight"),
}
FEATURE_COLUMNS: tuple[str, ...] = MAP_FEATURES[:12]

# Kovaleva et al. 2019 §3 pattern types; a map's pattern code is its index here.
PATTERNS: tuple[str, ...] = ("vertical", "diagonal", "vertical_diagonal", "block", "heterogeneous")
VERTICAL, DIAGONAL, VERTICAL_DIAGONAL, BLOCK, HETEROGENEOUS = range(len(PATTERNS))

if tuple(FEATURE_TITLES) != FEATURE_COLUMNS:  # pragma: no cover - guards an edit of one table without the other
    raise ImportError("attnx.kernels.names: FEATURE_TITLES must list FEATURE_COLUMNS in order")
