"""Which array module runs the math: NumPy on the CPU, or CuPy on a GPU.

Array code never calls ``numpy.*`` on an array that may live on a GPU; it asks
``xp = array_module(x)`` and calls ``xp.*``. Host-only steps (drawing, NMS,
evaluation, saving) call ``to_host`` explicitly.

CuPy is imported only when a CuPy array is seen or the GPU is asked for, so
``import numpy_retinanet`` never needs it.
"""

from __future__ import annotations

import resource

import numpy as np

# Array types that are not NumPy's, mapped to the module that runs them. CuPy is
# registered lazily on first sight; tests register a strict stand-in for CuPy.
_MODULES: dict[type, object] = {}


def register_array_module(array_type: type, module) -> None:
    """Make ``array_module`` return ``module`` for arrays of ``array_type``."""
    _MODULES[array_type] = module


def _module_of(a):
    if isinstance(a, (np.ndarray, np.generic)):
        return np
    t = type(a)
    if t in _MODULES:
        return _MODULES[t]
    if t.__module__.split(".")[0] == "cupy":
        import cupy  # only reached when a CuPy array already exists

        _MODULES[t] = cupy
        return cupy
    return None


def array_module(*arrays):
    """Return the array module (numpy or cupy) for ``arrays``.

    Python scalars and ``None`` are ignored. Mixing host and device arrays is
    refused with a ``ValueError``, since it would copy silently or fail deep
    inside an op.
    """
    found = None
    for a in arrays:
        if a is None or isinstance(a, (int, float, bool)):
            continue
        m = _module_of(a)
        if m is None:
            continue
        if found is not None and m is not found:
            raise ValueError(
                f"arrays live on different devices: {found.__name__} and {m.__name__}; "
                "move them with to_device/to_host first"
            )
        found = m
    return np if found is None else found


def is_host(x) -> bool:
    """True when ``x`` is a NumPy array or scalar (lives in host memory)."""
    return isinstance(x, (np.ndarray, np.generic))


def to_host(x):
    """Return ``x`` as a NumPy array (a copy from the GPU if needed; no copy on the host)."""
    if is_host(x):
        return np.asarray(x)
    if x is None:
        return None
    xp = array_module(x)
    if xp is np:
        return np.asarray(x)
    return xp.asnumpy(x)


class GPUUnavailableError(RuntimeError):
    """The GPU was asked for, but CuPy is missing or sees no usable CUDA device."""


_INSTALL_GPU = (
    "install the gpu extra: python -m pip install 'numpy-retinanet[gpu]' (from a checkout: "
    "python -m pip install -e '.[gpu]'), which brings cupy-cuda12x; for another CUDA version "
    "install the matching cupy-cudaXXx wheel instead. Or run on the CPU: --device cpu"
)


def get_gpu_module():
    """Import CuPy and check that a CUDA device is there; raise ``GPUUnavailableError`` saying how if not."""
    try:
        import cupy
    except ImportError as e:
        raise GPUUnavailableError(f"the GPU was asked for but CuPy is not installed; {_INSTALL_GPU}") from e
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError: no driver, or a wheel built for another CUDA
        raise GPUUnavailableError(
            f"CuPy is installed but no CUDA device could be used ({e}); check the NVIDIA driver and that "
            f"the CuPy wheel matches its CUDA version, or {_INSTALL_GPU}"
        ) from e
    if n < 1:
        raise GPUUnavailableError(f"CuPy is installed but found no CUDA device; {_INSTALL_GPU}")
    return cupy


def get_module(device: str):
    """Array module for a device name: ``"cpu"`` -> numpy, ``"gpu"`` -> cupy."""
    if device == "cpu":
        return np
    if device == "gpu":
        return get_gpu_module()
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")


def to_device(x, xp):
    """Move a host array to the module ``xp`` (a no-op for numpy)."""
    if x is None:
        return None
    if xp is np:
        return to_host(x)
    return xp.asarray(x)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    Why: glibc serves every allocation above its mmap threshold (at most 32 MiB) with
    a fresh mmap and unmaps it on free, so a big array allocated every step (the
    78 MiB column matrix of a 64-channel conv on 64x64 maps at batch 8) is faulted
    in page by page every time. Measured on the 2-core VM this was written on, that
    conv's forward + backward took 74-104 ms with the default and 64-66 ms with this,
    interleaved with PyTorch. The cost: the process keeps its peak memory mapped.
    Called by the command line (``cli.main``); a no-op returning False where malloc
    is not glibc's.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
