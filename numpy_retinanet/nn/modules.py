"""Modules: parameters, gradients and a cache stack around the functional ops.

A module is thin. ``params`` and ``grads`` are flat dicts with the same dotted
keys (``"backbone.stem.conv.weight"``) mapping to the very arrays the module
computes with, so an optimizer can update them in place.

Every ``forward`` pushes one cache; every ``backward`` pops the last one (last
in, first out) and *adds* into ``grads``. A head that runs on five pyramid
levels therefore keeps five caches, is walked back in reverse order, and ends
up with the sum of five contributions -- exactly the gradient of a weight that
is shared. ``zero_grad()`` clears the gradients; the optimizer is separate and
backward never changes a parameter.
"""

from __future__ import annotations

import math

import numpy as np

from numpy_retinanet._checks import check_int
from numpy_retinanet.backend import array_module, to_host
from numpy_retinanet.nn import functional as F


class Module:
    """Base class: own parameters, child modules in order, and a stack of caches."""

    def __init__(self):
        # Set through object.__setattr__: our own __setattr__ registers children.
        object.__setattr__(self, "_own_params", {})
        object.__setattr__(self, "_own_grads", {})
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "_caches", [])

    def __setattr__(self, name, value):
        # Assigning a Module to an attribute makes it a child, so its parameters
        # appear under "name." in params/grads without a separate registration call.
        if isinstance(value, Module):
            self._children[name] = value
        object.__setattr__(self, name, value)

    # -- parameters -------------------------------------------------------
    def add_param(self, name: str, value):
        """Register a parameter and its zero gradient; returns the array."""
        if "." in name:
            raise ValueError(f"parameter name must not contain '.', got {name!r}")
        self._own_params[name] = value
        self._own_grads[name] = array_module(value).zeros_like(value)  # laid out like the parameter
        return value

    def _walk(self, prefix: str = ""):
        """(dotted prefix, module) for this module and every descendant, depth first, as ``params`` names them."""
        yield prefix, self
        for cname, child in self._children.items():
            yield from child._walk(f"{prefix}{cname}.")

    def _named(self, which: str) -> dict:
        return {prefix + k: v for prefix, m in self._walk()
                for k, v in (m._own_params if which == "params" else m._own_grads).items()}

    @property
    def params(self) -> dict:
        """Flat dict: dotted name -> parameter array (the live arrays, not copies)."""
        return self._named("params")

    @property
    def grads(self) -> dict:
        """Flat dict with the same keys as ``params``: accumulated gradients."""
        return self._named("grads")

    def modules(self):
        """This module and every descendant, depth first."""
        for _, m in self._walk():
            yield m

    def zero_grad(self):
        """Set every gradient to zero (in place)."""
        for m in self.modules():
            for g in m._own_grads.values():
                g[...] = 0

    def clear_cache(self):
        """Drop every pending forward cache (after a forward that will not be backpropagated)."""
        for m in self.modules():
            m._caches.clear()

    def num_pending(self) -> int:
        """Number of forward caches waiting for a backward, over all descendants."""
        return sum(len(m._caches) for m in self.modules())

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(int(np.prod(p.shape)) for p in self.params.values())

    # -- caches -----------------------------------------------------------
    def _push(self, cache):
        self._caches.append(cache)

    def _pop(self, what: str):
        if not self._caches:
            raise RuntimeError(
                f"{type(self).__name__}.backward called with no pending forward ({what}); "
                "every backward needs a forward before it, in reverse order"
            )
        return self._caches.pop()

    # -- saving -----------------------------------------------------------
    def state_dict(self) -> dict:
        """Flat dict of dotted name -> host NumPy copy of each parameter (C-contiguous)."""
        return {k: np.array(to_host(v), copy=True, order="C") for k, v in self.params.items()}

    def load_state_dict(self, state: dict):
        """Copy ``state`` into the parameters in place, checking names, shapes and dtypes.

        Raises ValueError listing missing or unexpected names, or naming the first
        parameter whose shape or dtype differs.
        """
        params = self.params
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(
                f"state dict does not match the model: missing {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                f"{' ...' if len(unexpected) > 5 else ''}"
            )
        for k, p in params.items():
            v = state[k]
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"state dict entry {k!r} has shape {tuple(v.shape)}, model expects {tuple(p.shape)}")
            if v.dtype != p.dtype:
                raise ValueError(f"state dict entry {k!r} has dtype {v.dtype}, model expects {p.dtype}")
            if not np.all(np.isfinite(to_host(v))):
                raise ValueError(f"state dict entry {k!r} contains NaN or infinity")
        xp = None
        for k, p in params.items():
            xp = xp or array_module(p)
            p[...] = xp.asarray(state[k])

    def to(self, xp):
        """Move every parameter and gradient to the array module ``xp`` (numpy or cupy)."""
        from numpy_retinanet.backend import to_device

        for m in self.modules():
            for k in list(m._own_params):
                m._own_params[k] = to_device(m._own_params[k], xp)
                m._own_grads[k] = to_device(m._own_grads[k], xp)
            m._caches.clear()
        return self

    def place_in(self, params: dict, grads: dict):
        """Keep every parameter and gradient in the arrays given from now on.

        ``params`` and ``grads``: dotted name -> an array of that parameter's shape and dtype
        (``engine.parallel`` gives views of memory shared between processes). The parameters'
        values are copied in and the gradients set to zero; afterwards the module computes
        with those arrays, so what another process writes there is what the next forward
        reads, and what backward adds there the other process reads, with no copy per step.
        Every array is checked before any is used.
        """
        owners = [(m, k, prefix + k) for prefix, m in self._walk() for k in m._own_params]
        missing = [name for _, _, name in owners if name not in params or name not in grads]
        if missing:
            raise ValueError(f"params and grads must hold an array for every parameter, got none for {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}")
        for m, k, name in owners:
            for new, old, what in ((params[name], m._own_params[k], "parameter"),
                                   (grads[name], m._own_grads[k], "gradient")):
                if tuple(new.shape) != tuple(old.shape) or new.dtype != old.dtype:
                    raise ValueError(f"{what} {name!r} must be placed in an array of shape {tuple(old.shape)} "
                                     f"and dtype {old.dtype}, got shape {tuple(new.shape)} and dtype {new.dtype}")
        for m, k, name in owners:
            params[name][...] = m._own_params[k]
            grads[name][...] = 0
            m._own_params[k], m._own_grads[k] = params[name], grads[name]
        return self

    def astype(self, dtype):
        """Cast every parameter (and gradient) to ``dtype`` in place of the old arrays."""
        for m in self.modules():
            for k in list(m._own_params):
                m._own_params[k] = m._own_params[k].astype(dtype)
                m._own_grads[k] = m._own_grads[k].astype(dtype)
        return self


class Conv2d(Module):
    """2-D convolution layer, NCHW; ``padding`` defaults to ``kernel_size // 2`` ("same" at stride 1).

    Initialization: ``init="normal"`` draws N(0, ``std``) (the paper's sigma = 0.01 for new
    layers, §4.1); ``init="he"`` draws N(0, sqrt(2 / fan_in)) (He et al. 2015), used in the
    backbone, which is trained from scratch here. Biases start at ``bias_init``.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, bias=True,
                 init="he", std=0.01, bias_init=0.0, rng=None, dtype=np.float32):
        super().__init__()
        if init not in ("he", "normal"):
            raise ValueError(f"init must be 'he' or 'normal', got {init!r}")
        rng = rng if rng is not None else np.random.default_rng(0)
        k = int(kernel_size)
        fan_in = in_channels * k * k
        sigma = math.sqrt(2.0 / fan_in) if init == "he" else std
        self.stride = int(stride)
        self.padding = k // 2 if padding is None else int(padding)
        # Parameters live only in the params dict (no attribute copies), so moving
        # the model to another device or dtype cannot leave a stale reference behind.
        w = (rng.standard_normal((out_channels, in_channels, k, k)) * sigma).astype(dtype)
        # The weight has PyTorch's shape (F, C, KH, KW) but is stored (F, KH, KW, C) in
        # memory (a transposed view). The convolution multiplies the filters as one
        # (F, KH*KW*C) matrix whose columns run (i, j, c), like the rows of its column
        # matrix (nn.functional's layout note); stored this way that matrix is a view of
        # the weight, where a C-contiguous weight needs a transposed copy in every call:
        # those copies, of weights no longer in cache, took 4-6 % of a worker's step.
        # Every op accepts any memory layout, and the values are the same, so the results
        # are too, bit for bit. The gradient is stored the same way (add_param).
        self.add_param("weight", np.ascontiguousarray(w.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2))
        if bias:
            self.add_param("bias", np.full((out_channels,), bias_init, dtype=dtype))

    def forward(self, x):
        """x (N, C, H, W) -> (N, F, H', W')."""
        w = self._own_params["weight"]
        b = self._own_params.get("bias")
        y, cache = F.conv2d_forward(x, w, b, stride=self.stride, padding=self.padding)
        self._push(cache)
        return y

    def backward(self, dout, need_dx=True):
        """dout (N, F, H', W') -> dx (N, C, H, W); adds dW and db into grads.

        ``need_dx=False``: the input needs no gradient (the images); dx is not computed
        and None is returned (``F.conv2d_backward``).
        """
        dx, dw, db = F.conv2d_backward(dout, self._pop("Conv2d"), need_dx=need_dx)
        self._own_grads["weight"] += dw
        if db is not None:
            self._own_grads["bias"] += db
        return dx


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x):
        y, cache = F.relu_forward(x)
        self._push(cache)
        return y

    def backward(self, dout):
        return F.relu_backward(dout, self._pop("ReLU"))


class GroupNorm(Module):
    """Group normalization (Wu & He, 2018) over (N, C, H, W) with per-channel scale and shift.

    Why it is here: the backbone is trained from scratch at batch sizes of 4-16,
    where batch statistics are too noisy for BatchNorm and a plain deep ResNet
    trains slowly; GroupNorm normalizes each image on its own.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.num_groups = check_int("num_groups", num_groups, 1)
        if num_channels % self.num_groups:
            raise ValueError(f"num_groups must be a divisor of num_channels ({num_channels}), got {num_groups}")
        self.eps = eps
        self.add_param("weight", np.ones((num_channels,), dtype=dtype))
        self.add_param("bias", np.zeros((num_channels,), dtype=dtype))

    def forward(self, x):
        y, cache = F.group_norm_forward(x, self._own_params["weight"], self._own_params["bias"],
                                        self.num_groups, eps=self.eps)
        self._push(cache)
        return y

    def backward(self, dout):
        dx, dgamma, dbeta = F.group_norm_backward(dout, self._pop("GroupNorm"))
        self._own_grads["weight"] += dgamma
        self._own_grads["bias"] += dbeta
        return dx


class MaxPool2d(Module):
    """Max pooling, NCHW (a ResNet's stem: 3x3, stride 2, padding 1). No parameters."""

    def __init__(self, kernel_size=3, stride=2, padding=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)

    def forward(self, x):
        y, cache = F.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._push(cache)
        return y

    def backward(self, dout):
        return F.max_pool2d_backward(dout, self._pop("MaxPool2d"))


class FrozenBatchNorm2d(Module):
    """Batch norm with fixed statistics and affine parameters: y = x * scale[c] + shift[c]
    (``F.frozen_batch_norm_coefficients``), as torchvision's FrozenBatchNorm2d.

    Its four arrays are stored under torchvision's names (``weight``, ``bias``, ``running_mean``,
    ``running_var``) so a checkpoint maps onto a torchvision state dict name for name. They are
    in ``params`` only to be saved and loaded: backward adds nothing to their gradients (frozen),
    so this module is for running pretrained networks, not for training them with ``SGD``
    (whose weight decay would still shrink them).
    """

    def __init__(self, num_channels, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.eps = float(eps)
        self.add_param("weight", np.ones((num_channels,), dtype=dtype))
        self.add_param("bias", np.zeros((num_channels,), dtype=dtype))
        self.add_param("running_mean", np.zeros((num_channels,), dtype=dtype))
        self.add_param("running_var", np.ones((num_channels,), dtype=dtype))

    def forward(self, x):
        p = self._own_params
        scale, shift = F.frozen_batch_norm_coefficients(p["weight"], p["bias"], p["running_mean"],
                                                        p["running_var"], self.eps)
        y, cache = F.channel_affine_forward(x, scale, shift)
        self._push(cache)
        return y

    def backward(self, dout):
        dx, _, _ = F.channel_affine_backward(dout, self._pop("FrozenBatchNorm2d"))
        return dx


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse. Children are named "0", "1", ..."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(layers):
            self._children[str(i)] = layer

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout, need_dx=True):
        """The layers' backward passes in reverse order. ``need_dx=False`` goes to the first layer
        (a Conv2d), which then computes no gradient for the input: None is returned."""
        for i, layer in reversed(list(enumerate(self.layers))):
            if i == 0 and not need_dx:
                return layer.backward(dout, need_dx=False)
            dout = layer.backward(dout)
        return dout
