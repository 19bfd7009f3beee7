"""What a map check found wrong: the codes :func:`attnx.store.checks.first_bad_map` and its numba kernels
(:mod:`attnx.store.checks_kernels`) return, in a module of their own so that neither imports the other for them."""

OUT_OF_RANGE, BAD_SUM = 1, 2
