"""Scale-out on a Dask cluster: the corpus cut into shards of whole windows, each run by the ordinary engine
on a worker, written through an Icechunk fork session into the shard's own region of the one store, and
merged by the coordinator in input order (see :mod:`attnx.scaleout.coordinator`).

Nothing here imports ``distributed`` at import time: the single-process path never loads it.
"""
