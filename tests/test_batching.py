"""Length-sorted batches under an attention-bytes budget."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from attnx.engine.batching import attention_bytes, plan_batches


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(2, 300), min_size=1, max_size=300),
    budget=st.integers(1 << 16, 1 << 26),
    max_tokens=st.integers(64, 20000),
)
def test_plan_is_sorted_partition_under_budget(lengths, budget, max_tokens):
    lengths = np.asarray(lengths)
    plan = plan_batches(lengths, budget, layers=6, heads=12, max_tokens=max_tokens)
    assert sorted(plan.order.tolist()) == list(range(len(lengths)))
    assert np.all(np.diff(lengths[plan.order]) >= 0)
    for j in range(len(plan)):
        idx = plan.batch(j)
        pad = lengths[idx].max()
        if len(idx) > 1:  # a single record may exceed the budget: it runs alone
            assert attention_bytes(len(idx), pad, 6, 12) <= budget
            assert len(idx) * pad <= max_tokens


def test_short_sentences_make_big_batches():
    lengths = np.array([8] * 1000 + [200] * 10)
    plan = plan_batches(lengths, 64 << 20, 12, 12, 1 << 20)
    sizes = [len(plan.batch(j)) for j in range(len(plan))]
    assert sizes[0] > 100 and sizes[-1] < 10


def test_stable_order_is_deterministic():
    lengths = np.array([5, 3, 5, 3, 9])
    plan = plan_batches(lengths, 1 << 30, 1, 1, 1 << 20)
    assert plan.order.tolist() == [1, 3, 0, 2, 4]
