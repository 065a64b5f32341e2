"""The dedup stages (MDR's stages 7-9)."""


def kernels():
    """`refinery.dedup._kernels`, the numba-compiled loops, imported on first use: numba's import
    costs ~0.3 s of CPU, and most processes that import the dedup modules (the driver, the filter
    phase's workers) only read their params."""
    from refinery.dedup import _kernels

    return _kernels
