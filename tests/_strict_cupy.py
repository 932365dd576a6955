"""A strict stand-in for CuPy, so that the GPU code path is tested on a machine without a GPU.

``ndarray`` wraps a NumPy array (the "device memory") and behaves as a CuPy array does
where host and device meet:

* ``numpy.asarray(device_array)`` raises ``TypeError: Implicit conversion to a NumPy array
  is not allowed`` (CuPy's ``__array__``), and NumPy ufuncs and functions refuse it
  (``__array_ufunc__ = None``, ``__array_function__`` raises), so a stray ``np.*`` call on a
  device array fails here;
* arithmetic, comparisons and the module's functions accept device arrays, Python scalars
  and NumPy *scalars* (``np.float64(2.0)``), and refuse a ``numpy.ndarray`` operand, even a
  0-d one, with ``TypeError: Unsupported type`` (CuPy's kernel argument check);
* ``device[...] = host_array`` raises ``ValueError: non-scalar numpy.ndarray cannot be used
  for fill`` (CuPy's ``fill``); a 0-d host array or a scalar is accepted;
* ``asarray``/``array`` copy host data to the device (allowed in CuPy), ``asnumpy`` and
  ``.get()`` copy back; ``float``/``int``/``bool``/``.item()``/``.tolist()`` on a device
  array are allowed (CuPy synchronizes and copies);
* reductions and integer indexing return 0-d device arrays, never NumPy scalars.

Deliberately stricter than CuPy, and why:

* CuPy accepts a NumPy array or a list as an index or as the value of an advanced-index
  assignment, copying it to the device behind the caller's back. Here both are refused, so
  every host -> device copy in the package is an explicit ``xp.asarray``.
* CuPy forwards ``numpy.sum(device_array)`` and other NumPy functions it also implements to
  itself (NEP 18 ``__array_function__``) and refuses the rest. Here every such call is
  refused: docs/ARCHITECTURE.md ("Backend") asks for ``xp.*``, and which NumPy functions CuPy implements differs
  between versions.

The module namespace handed to ``backend.register_array_module`` is ``cupy`` below: it
holds only names that CuPy has (``tests/test_gpu_real.py`` checks each against the real
CuPy when one is installed), so code that reaches for a NumPy-only function fails here.
"""

from __future__ import annotations

import types

import numpy as _np

IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed. "
    "Please use `.get()` to construct a NumPy array explicitly."
)
_PY_SCALARS = (bool, int, float, complex)


def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


def _operand(x):
    """An operand of an elementwise op or a reduction: device array or scalar, never a host array."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _PY_SCALARS) or isinstance(x, _np.generic):
        return x
    raise _unsupported(x)


def _device(x, what="argument"):
    """An argument that CuPy requires to be a device array."""
    if not isinstance(x, ndarray):
        raise TypeError(f"{what} must be a device array (cupy.ndarray), got {type(x)}")
    return x._a


def _index(key):
    """An index: ints, slices, None, Ellipsis and device arrays; host arrays and lists are refused."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if key is None or key is Ellipsis or isinstance(key, (slice, int, _np.integer)):
        return key
    raise IndexError(
        f"index of type {type(key)} refused: index a device array with ints, slices or device arrays "
        "(CuPy would copy a host index to the device implicitly; make the copy explicit with xp.asarray)"
    )


def _wrap(r):
    """Results stay on the device: arrays and NumPy scalars become ``ndarray`` (0-d for scalars)."""
    if isinstance(r, (_np.ndarray, _np.generic)):
        return ndarray(_np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(x) for x in r)
    return r


class ndarray:
    """A device array: a NumPy array that refuses to meet host arrays implicitly."""

    __slots__ = ("_a",)
    __array_ufunc__ = None  # numpy ufuncs and numpy-array operators refuse it
    __hash__ = None

    def __init__(self, a):
        assert isinstance(a, _np.ndarray)
        self._a = a

    def __array__(self, *args, **kwargs):
        raise TypeError(IMPLICIT)

    def __array_function__(self, func, types, args, kwargs):
        # Real CuPy forwards numpy.<f>(device_array) to cupy.<f> where one exists (NEP 18); the
        # package's convention is stricter (xp = array_module(x); xp.<f>), so the stand-in refuses.
        raise TypeError(f"numpy.{func.__name__} called on a device array; use xp = array_module(x) and xp.{func.__name__}")

    # -- attributes ---------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    T = property(lambda self: ndarray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(_np.asarray(x)) for x in self._a)

    def __repr__(self):
        return f"strict_cupy.{self._a!r}"

    # -- device -> host, explicit or synchronizing (allowed in CuPy) ---------
    def get(self):
        return self._a.copy()

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    # -- methods ----------------------------------------------------------
    def astype(self, dtype, order="K", copy=True):  # cupy.ndarray.astype takes order too
        return ndarray(self._a.astype(dtype, order=order, copy=copy))

    def copy(self):
        return ndarray(self._a.copy())

    def fill(self, value):
        self._a.fill(_operand(value))

    def reshape(self, *shape, order="C"):
        return ndarray(self._a.reshape(*shape, order=order))

    def transpose(self, *axes):
        return ndarray(self._a.transpose(*axes))

    def swapaxes(self, a, b):
        return ndarray(self._a.swapaxes(a, b))

    def ravel(self):
        return ndarray(self._a.ravel())

    def flatten(self):
        return ndarray(self._a.flatten())

    def squeeze(self, axis=None):
        return ndarray(self._a.squeeze(axis))

    def sum(self, axis=None, dtype=None, keepdims=False):
        return _wrap(self._a.sum(axis=axis, dtype=dtype, keepdims=keepdims))

    def mean(self, axis=None, dtype=None, keepdims=False):
        return _wrap(self._a.mean(axis=axis, dtype=dtype, keepdims=keepdims))

    def max(self, axis=None, keepdims=False):
        return _wrap(self._a.max(axis=axis, keepdims=keepdims))

    def min(self, axis=None, keepdims=False):
        return _wrap(self._a.min(axis=axis, keepdims=keepdims))

    def argmax(self, axis=None):
        return _wrap(self._a.argmax(axis=axis))

    def argmin(self, axis=None):
        return _wrap(self._a.argmin(axis=axis))

    def any(self, axis=None, keepdims=False):
        return _wrap(self._a.any(axis=axis, keepdims=keepdims))

    def all(self, axis=None, keepdims=False):
        return _wrap(self._a.all(axis=axis, keepdims=keepdims))

    def clip(self, min=None, max=None):
        return _wrap(self._a.clip(None if min is None else _operand(min), None if max is None else _operand(max)))

    def nonzero(self):
        return _wrap(self._a.nonzero())

    # -- indexing ------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, _np.ndarray) and value.ndim > 0:
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        if isinstance(value, _np.ndarray):  # 0-d: CuPy takes its item()
            value = value.item()
        self._a[_index(key)] = _operand(value)

    # -- operators -----------------------------------------------------------
    def __neg__(self):
        return ndarray(-self._a)

    def __pos__(self):
        return ndarray(+self._a)

    def __abs__(self):
        return ndarray(abs(self._a))

    def __invert__(self):
        return ndarray(~self._a)


def _binary(name):
    op = getattr(_np.ndarray, name)

    def method(self, other):
        return _wrap(op(self._a, _operand(other)))

    method.__name__ = name
    return method


def _inplace(name):
    op = getattr(_np.ndarray, name)

    def method(self, other):
        op(self._a, _operand(other))
        return self

    method.__name__ = name
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor"):
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))
    setattr(ndarray, f"__r{_name}__", _binary(f"__r{_name}__"))
    if _name != "matmul":  # `a @= b` is left out: not every CuPy version has it
        setattr(ndarray, f"__i{_name}__", _inplace(f"__i{_name}__"))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))


# -- functions ---------------------------------------------------------------
def asarray(a, dtype=None):
    """Host -> device copy (or the device array itself).

    A list holding device arrays is refused (``__array__`` raises), where CuPy would gather
    it; the package stacks device arrays with ``xp.stack`` instead.
    """
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    return ndarray(_np.array(a, dtype=dtype, copy=True))


def array(a, dtype=None, copy=True):
    if isinstance(a, ndarray):
        return a.astype(a.dtype if dtype is None else dtype, copy=copy)
    return ndarray(_np.array(a, dtype=dtype, copy=True))


def asnumpy(a):
    """Device -> host copy; a host array passes through (as in CuPy)."""
    return a.get() if isinstance(a, ndarray) else _np.asarray(a)


def ascontiguousarray(a, dtype=None):
    return ndarray(_np.ascontiguousarray(_device(a), dtype=dtype))


def _creation(fn):
    def make(shape, dtype=float):
        return ndarray(fn(shape, dtype=dtype))

    make.__name__ = fn.__name__
    return make


zeros, ones, empty = _creation(_np.zeros), _creation(_np.ones), _creation(_np.empty)


def full(shape, fill_value, dtype=None):
    return ndarray(_np.full(shape, _operand(fill_value), dtype=dtype))


def _like(fn):
    def make(a, dtype=None):
        return ndarray(fn(_device(a), dtype=dtype))

    make.__name__ = fn.__name__
    return make


zeros_like, ones_like, empty_like = _like(_np.zeros_like), _like(_np.ones_like), _like(_np.empty_like)


def arange(*args, dtype=None):
    return ndarray(_np.arange(*args, dtype=dtype))


def linspace(start, stop, num=50, endpoint=True, dtype=None):
    return ndarray(_np.linspace(start, stop, num, endpoint=endpoint, dtype=dtype))


def meshgrid(*xi, indexing="xy"):
    return [ndarray(g) for g in _np.meshgrid(*(_device(x) for x in xi), indexing=indexing)]


def concatenate(arrays, axis=0):
    return ndarray(_np.concatenate([_device(a, "every array") for a in arrays], axis=axis))


def stack(arrays, axis=0):
    return ndarray(_np.stack([_device(a, "every array") for a in arrays], axis=axis))


def broadcast_to(a, shape):
    return ndarray(_np.broadcast_to(_device(a), shape))


def where(condition, x, y):
    return _wrap(_np.where(_device(condition), _operand(x), _operand(y)))


def nonzero(a):
    return _wrap(_np.nonzero(_device(a)))


def flatnonzero(a):
    return ndarray(_np.flatnonzero(_device(a)))


def einsum(subscripts, *operands):
    return _wrap(_np.einsum(subscripts, *(_device(a, "every operand") for a in operands)))


def repeat(a, repeats, axis=None):
    # CuPy takes repeats as an int or a list of ints, never an array.
    if not isinstance(repeats, (int, _np.integer, list, tuple)):
        raise _unsupported(repeats)
    return ndarray(_np.repeat(_device(a), repeats, axis=axis))


def result_type(*arrays_and_dtypes):
    # CuPy passes arrays' dtypes to numpy.result_type (no value-based casting).
    return _np.result_type(*(a.dtype if isinstance(a, ndarray) else a for a in arrays_and_dtypes))


def _elementwise(fn):
    def apply(*args, out=None, **kwargs):
        if out is None:
            return _wrap(fn(*(_operand(a) for a in args), **kwargs))
        # As in CuPy, ``out`` must be a device array; the result is written into it (a view
        # included: CuPy's matmul then computes into a new array and copies it there).
        fn(*(_operand(a) for a in args), out=_device(out, "out"), **kwargs)
        return out

    apply.__name__ = fn.__name__
    return apply


def _reduction(fn):
    def reduce(a, axis=None, keepdims=False, **kwargs):
        return _wrap(fn(_device(a), axis=axis, keepdims=keepdims, **kwargs))

    reduce.__name__ = fn.__name__
    return reduce


def argmax(a, axis=None):
    return _wrap(_np.argmax(_device(a), axis=axis))


def argmin(a, axis=None):
    return _wrap(_np.argmin(_device(a), axis=axis))


def clip(a, a_min, a_max):
    return _wrap(_np.clip(_device(a), _operand(a_min), _operand(a_max)))


cupy = types.ModuleType("strict_cupy", "A strict stand-in for CuPy (tests/_strict_cupy.py).")
cupy.__dict__.update(
    ndarray=ndarray,
    asarray=asarray, array=array, asnumpy=asnumpy, ascontiguousarray=ascontiguousarray,
    zeros=zeros, ones=ones, empty=empty, full=full,
    zeros_like=zeros_like, ones_like=ones_like, empty_like=empty_like,
    arange=arange, linspace=linspace, meshgrid=meshgrid,
    concatenate=concatenate, stack=stack, broadcast_to=broadcast_to,
    where=where, nonzero=nonzero, flatnonzero=flatnonzero, result_type=result_type,
    einsum=einsum, repeat=repeat,
    argmax=argmax, argmin=argmin, clip=clip,
    newaxis=None, pi=_np.pi, inf=_np.inf, nan=_np.nan,
    # CuPy re-exports NumPy's scalar types as its dtypes.
    bool_=_np.bool_, uint8=_np.uint8, int32=_np.int32, int64=_np.int64,
    float16=_np.float16, float32=_np.float32, float64=_np.float64,
)
for _name in ("maximum", "minimum", "exp", "expm1", "log", "log1p", "sqrt", "abs", "absolute", "sign",
              "isfinite", "isnan", "isinf", "floor", "ceil", "matmul"):
    setattr(cupy, _name, _elementwise(getattr(_np, _name)))
for _name in ("sum", "mean", "max", "amax", "min", "amin", "any", "all"):
    setattr(cupy, _name, _reduction(getattr(_np, _name)))
