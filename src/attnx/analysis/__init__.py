"""Streaming analyses over a store (features, patterns, head similarity, relations, comparison)."""

from attnx.analysis.api import compare, features, patterns, relations, similarity
from attnx.analysis.partial import Partial
from attnx.analysis.run import (
    ANALYSES,
    AnalyzeParams,
    analyze_store,
    compare_stores,
    feature_means,
    pattern_proportions,
    relation_table,
    similarity_means,
    write_compare,
    write_results,
)

__all__ = [
    "ANALYSES", "AnalyzeParams", "Partial", "analyze_store", "compare_stores", "feature_means",
    "pattern_proportions", "relation_table", "similarity_means", "write_compare", "write_results",
    "features", "patterns", "similarity", "relations", "compare",
]
