"""numba kernels over stored attention, each beside its float64 numpy twin (:mod:`attnx.kernels.reference`).

They take numpy arrays only (flat stored values with the tables of :func:`attnx.kernels.common.kernel_input`,
offsets, lengths, token masks) and never import :mod:`attnx.store`: :mod:`attnx.analysis.blocks` turns a store's
blocks into their inputs. Feature and pattern names live in :mod:`attnx.kernels.names`, which imports nothing.
"""
