"""Streaming analyses over a store (features, patterns, head similarity, relations, comparison)."""

from attnx.analysis.api import compare, features, patterns, relations, similarity
from attnx.analysis.compare import compare_stores, write_compare
from attnx.analysis.dispatch import analyze_store
from attnx.analysis.driver import ANALYSES, AnalyzeParams
from attnx.analysis.outputs import (
    feature_means,
    pattern_proportions,
    relation_table,
    similarity_means,
    write_results,
)
from attnx.analysis.partial import Partial

__all__ = [
    "ANALYSES", "AnalyzeParams", "Partial", "analyze_store", "compare_stores", "feature_means",
    "pattern_proportions", "relation_table", "similarity_means", "write_compare", "write_results",
    "features", "patterns", "similarity", "relations", "compare",
]
