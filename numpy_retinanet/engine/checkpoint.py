"""Checkpoints as ``.npz`` files that load without pickle.

A checkpoint holds plain arrays only: ``param/<name>`` for every parameter,
``optim/<name>`` for the momentum buffers, and ``meta``, a JSON string (a 0-d
unicode array) with the model config, the training config and the step. It is
read with ``allow_pickle=False``: a checkpoint from a stranger can hold no code.

Writing is atomic: the file is written under a temporary name in the same
folder, flushed to disk, then renamed over the target (``os.replace`` is atomic
on POSIX and Windows), so a crash leaves the old checkpoint or the new one,
never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from numpy_retinanet.data.build import build_dataset
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.model.retinanet import build_model

FORMAT = "numpy-retinanet-checkpoint"
VERSION = 1

#: The detector that ships with the package: the default recipe's run (``numpy-retinanet train``),
#: exported with ``numpy-retinanet export`` (parameters only). ``detect`` and ``evaluate`` use it
#: when no checkpoint is given; the README says how to reproduce it bit for bit.
SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                             "shapes_default.npz")


def save_checkpoint(path, model, optimizer=None, step=0, train_config=None, extra=None, class_names=None):
    """Write ``model`` (and optionally the optimizer state) to ``path`` atomically.

    Parameters
    ----------
    path : target file (``.npz``).
    model : a RetinaNet (anything with ``state_dict()`` and ``config()``).
    optimizer : an SGD, or None.
    step : number of training steps done.
    train_config : JSON-serialisable dict of training settings (for resuming).
    extra : JSON-serialisable dict stored in the meta (e.g. loss history).
    class_names : the K names of the classes, in label order (``dataset.class_names``), so that
        ``detect`` and ``evaluate`` can name what the model finds. None: the names of the
        dataset that ``train_config`` describes.
    """
    path = os.fspath(path)
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    class_names = _class_names(class_names, train_config or {}, model.num_classes)
    meta = {"format": FORMAT, "version": VERSION, "model": model.config(), "step": int(step),
            "train_config": train_config or {}, "class_names": class_names,
            "has_optimizer": optimizer is not None, "extra": extra or {}}
    arrays["meta"] = np.array(json.dumps(meta))
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".npz.tmp", dir=folder)
    except OSError as e:  # name the file asked for, not the temporary one
        raise OSError(e.errno, f"cannot write checkpoint {path!r} (folder {folder!r}): {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            # compressed: the meta (a JSON string stored as UCS-4, 4 bytes a character) shrinks
            # tenfold, the float32 parameters a little; 4.5 MB -> 2.9 MB for the shipped model
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_checkpoint(path):
    """Read a checkpoint's arrays and meta without building a model.

    Returns
    -------
    meta : dict (format, version, model, step, train_config, has_optimizer, extra).
    params : dict name -> array.
    optim : dict name -> array (empty when no optimizer state was saved).

    Raises FileNotFoundError for a missing file and ValueError naming the file for
    a truncated, corrupt or foreign one.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    # A checkpoint is an .npz, i.e. a zip archive. Anything else np.load would try to read
    # as a pickle and refuse with advice to load it unsafely, which is wrong advice here.
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise ValueError(f"{path!r} is not a numpy-retinanet checkpoint (not an .npz archive; "
                             "empty, truncated at the start, or another kind of file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if "meta" not in names:
                raise ValueError(f"{path!r} is not a numpy-retinanet checkpoint (no 'meta' entry)")
            meta = json.loads(str(z["meta"]))
            params = {n[len("param/"):]: z[n] for n in names if n.startswith("param/")}
            optim = {n[len("optim/"):]: z[n] for n in names if n.startswith("optim/")}
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path!r} is not a readable checkpoint (truncated or corrupt): {e}") from e
    except ValueError as e:
        if path in str(e):
            raise
        # np.load raises ValueError for object arrays (pickle) and for non-npy data.
        raise ValueError(f"{path!r} is not a valid numpy-retinanet checkpoint: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a numpy-retinanet checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path!r} has checkpoint version {meta.get('version')}, this code reads {VERSION}")
    return meta, params, optim


def export_weights(checkpoint, out):
    """Write the parameters of ``checkpoint`` to ``out`` without the optimizer's state: the file to
    share or ship. The meta (model, training settings, class names, loss history) is kept, so the
    file loads with ``load_checkpoint`` and names what it was trained on. Returns ``out``.
    """
    meta, params, _ = read_checkpoint(checkpoint)
    model = build_model(meta["model"])
    try:
        model.load_state_dict(params)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} does not fit its model: {e}") from e
    return save_checkpoint(out, model, None, step=meta["step"], train_config=meta["train_config"],
                           extra=meta.get("extra", {}), class_names=meta.get("class_names"))


def load_checkpoint(path):
    """Load a checkpoint into a new model.

    Returns
    -------
    model : RetinaNet with the saved parameters.
    info : dict with "step", "model" (config), "train_config", "class_names" (K names, in
        label order), "extra" and "optimizer" (the momentum buffers, or None).
    """
    meta, params, optim = read_checkpoint(path)
    try:
        model = build_model(meta["model"])
        model.load_state_dict(params)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {os.fspath(path)!r} does not fit its model: {e}") from e
    info = {"step": meta["step"], "model": meta["model"], "train_config": meta["train_config"],
            "class_names": _class_names(meta.get("class_names"), meta["train_config"], model.num_classes),
            "extra": meta.get("extra", {}), "optimizer": optim if meta.get("has_optimizer") else None}
    return model, info


def _class_names(names, train_config, num_classes):
    """``names`` checked to be K strings; None: those of the dataset ``train_config`` describes
    (checkpoints written before class names were saved are read this way)."""
    if names is None:
        config = TrainConfig.from_dict(train_config, num_classes=num_classes)
        names = build_dataset(config, "eval", num_images=1).class_names
    names = list(names)
    if len(names) != num_classes or not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names must be {num_classes} strings (one per class), got {names!r}")
    return names
