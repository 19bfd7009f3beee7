"""Shared test helpers (a package, so that no test module imports another): paths, synthetic stores and
blocks, the CPU twin of the CUDA calls."""
