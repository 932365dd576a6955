"""Checkpoints as ``.npz`` files that load without pickle.

A checkpoint holds plain arrays only: ``param/<name>`` for every parameter,
``optim/<name>`` for the momentum buffers, and ``meta``, a JSON string (a 0-d
unicode array) with the model config, the training config and the step. It is
read with ``allow_pickle=False``: a checkpoint from a stranger can hold no code.

Writing is atomic (``run_folder.write_atomically``): the file is written under a temporary name in
the same folder, flushed to disk, then renamed over the target, so a crash leaves the old checkpoint
or the new one, never half of one. The temporary name is fixed (``.<name>.tmp``), so a save killed
midway leaves at most one such file, which the next save overwrites and renames away; it is created
with mode 0666 less the umask (0644 as a rule), like every other file of a run.

Reading bounds memory before it allocates: each archive member's declared (uncompressed) size,
each array's header, and every size in the meta (``LIMITS``) are checked first, so a small file
that claims gigabytes (a zip bomb) is refused at once. Every field of the meta is checked for its
JSON type, and the momentum buffers for names, shapes and finite, bounded values: an error names
the file and the field.
"""

from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np

from numpy_retinanet._checks import check_file, is_int
from numpy_retinanet.data.build import MAX_IMAGE_SIZE, build_dataset
from numpy_retinanet.engine.config import MAX_BATCH_SIZE, TrainConfig
from numpy_retinanet.engine.run_folder import write_atomically
from numpy_retinanet.model.presets import resolve_config
from numpy_retinanet.model.resnet50_fpn import RESNET50_FPN, check_resnet50_fpn_config
from numpy_retinanet.model.retinanet import build_model

FORMAT = "numpy-retinanet-checkpoint"
VERSION = 1

#: What a checkpoint may hold; a reader checks these before it allocates anything. The paper's
#: preset has 21M parameters with 80 classes (163 MiB in float64) and the meta of a 90k-step run is
#: a few MB, so real checkpoints sit far below; a model at every model limit at once (twice the
#: paper's channels and depth, 16 anchors, 256 classes) has 127M parameters, 0.95 GiB in float64.
LIMITS = {
    "member_bytes": 512 * 2**20,  # one array of the archive, uncompressed
    "meta_bytes": 128 * 2**20,  # the meta: 32M characters (UCS-4), ten times a 90k-step run's history
    "total_bytes": 1024 * 2**20,  # all members together, uncompressed
    "members": 4096,  # archive entries (the paper's preset has under 200 parameters)
    "num_classes": 256,
    # int model settings (model/presets.py); the paper's preset uses at most 512 channels and 4 convs
    "stem_width": 512, "widths": 512, "fpn_channels": 512, "head_channels": 512,
    "gn_groups": 512, "head_norm_groups": 512, "depths": 4, "head_depth": 4, "anchor_sizes": 4096,
    # list model settings: entries (anchors per location = aspect ratios x scales <= 16)
    "aspect_ratios_len": 4, "scales_len": 4,
    # training settings that size a step's arrays: the limits train itself accepts (one home each)
    "image_size": MAX_IMAGE_SIZE, "batch_size": MAX_BATCH_SIZE,
    # the largest |momentum| accepted: SGD's buffer is a sum of clipped gradients damped by momentum < 1
    "momentum_abs": 1e6,
}

#: The detector that ships with the package: the default recipe's run (``numpy-retinanet train``),
#: exported with ``numpy-retinanet export`` (parameters only). ``detect`` and ``evaluate`` use it
#: when no checkpoint is given; the README says how to reproduce it bit for bit.
SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                             "shapes_default.npz")


def save_checkpoint(path, model, optimizer=None, step=0, train_config=None, extra=None, class_names=None,
                    category_ids=None):
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
    category_ids : the K category ids of a COCO-format dataset's JSON, in label order
        (``dataset.category_ids``), so that ``evaluate --results`` and ``detect --json`` write
        the dataset's own ids. None: the ids 1..K (COCO's ids start at 1).
    """
    path = os.fspath(path)
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    class_names = _class_names(class_names, train_config or {}, model.num_classes)
    meta = {"format": FORMAT, "version": VERSION, "model": model.config(), "step": int(step),
            "train_config": train_config or {}, "class_names": class_names,
            "has_optimizer": optimizer is not None, "extra": extra or {}}
    if category_ids is not None:
        meta["category_ids"] = _category_ids(category_ids, model.num_classes)
    arrays["meta"] = np.array(json.dumps(meta))
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot write checkpoint {path!r} (folder {folder!r}): {e.strerror}") from e
    # compressed: the meta (a JSON string stored as UCS-4, 4 bytes a character) shrinks tenfold, the
    # float32 parameters a little; 4.5 MB -> 2.9 MB for the shipped model.
    write_atomically(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def read_checkpoint(path):
    """Read a checkpoint's arrays and meta without building a model.

    Returns
    -------
    meta : dict (format, version, model, step, train_config, has_optimizer, extra).
    params : dict name -> array.
    optim : dict name -> array (empty when no optimizer state was saved).

    Raises FileNotFoundError for a missing file and ValueError naming the file for
    a truncated, corrupt, foreign or oversized one, or one whose meta or momentum is wrong.
    """
    meta, params, optim = _read(path)
    _check_momentum(os.fspath(path), meta, params, optim)
    return meta, params, optim


def _read(path):
    """``read_checkpoint`` less the momentum check (``load_checkpoint`` first fits the model)."""
    path = check_file("checkpoint", path, "a file")
    # A checkpoint is an .npz, i.e. a zip archive. Anything else np.load would try to read
    # as a pickle and refuse with advice to load it unsafely, which is wrong advice here.
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise ValueError(f"{path!r} is not a numpy-retinanet checkpoint (not an .npz archive; "
                             "empty, truncated at the start, or another kind of file)")
    try:
        with zipfile.ZipFile(path) as z:
            _check_directory(path, z.infolist())
            names = [n[:-len(".npy")] for n in z.namelist()]
            if "meta" not in names:
                raise ValueError(f"{path!r} is not a numpy-retinanet checkpoint (no 'meta' entry)")
            meta = json.loads(str(_read_member(path, z, "meta")))
            _check_meta(path, meta)
            params = {n[len("param/"):]: _read_member(path, z, n) for n in names if n.startswith("param/")}
            optim = {n[len("optim/"):]: _read_member(path, z, n) for n in names if n.startswith("optim/")}
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path!r} is not a readable checkpoint (truncated or corrupt): {e}") from e
    except ValueError as e:
        if path in str(e):
            raise
        # read_array raises ValueError for object arrays (pickle) and for non-npy data.
        raise ValueError(f"{path!r} is not a valid numpy-retinanet checkpoint: {e}") from e
    return meta, params, optim


def _check_directory(path, infos):
    """Refuse an archive whose zip directory declares more than ``LIMITS`` allow, before reading a byte."""
    if len(infos) > LIMITS["members"]:
        raise ValueError(f"{path!r}: members must be at most {LIMITS['members']}, got {len(infos)}")
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ValueError(f"{path!r} is not a numpy-retinanet checkpoint (member {info.filename!r} is not .npy)")
        limit = LIMITS["meta_bytes" if info.filename == "meta.npy" else "member_bytes"]
        if info.file_size > limit:
            raise ValueError(f"{path!r}: member {info.filename!r} must be at most {limit} bytes "
                             f"uncompressed, got {info.file_size}")
    total = sum(info.file_size for info in infos)
    if total > LIMITS["total_bytes"]:
        raise ValueError(f"{path!r}: members must be at most {LIMITS['total_bytes']} bytes uncompressed "
                         f"together, got {total}")


def _read_member(path, z, name):
    """One array of the archive; its .npy header must agree with the size the zip directory declared,
    so an array is allocated only once its size has passed ``_check_directory``."""
    info = z.getinfo(name + ".npy")
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"{path!r}: member {name!r} has .npy format version {version}, "
                             "this code reads 1.0 and 2.0")
        shape, fortran_order, dtype = read_header(f)
        if dtype.hasobject:  # a pickle: never unpickled here
            raise ValueError(f"{path!r}: member {name!r} holds Python objects (a pickle), refused")
        nbytes = math.prod(shape) * dtype.itemsize
        if f.tell() + nbytes != info.file_size:
            raise ValueError(f"{path!r}: member {name!r} declares shape {shape} of {dtype} ({nbytes} bytes) "
                             f"but {info.file_size - f.tell()} bytes of data")
        array = np.empty(shape[::-1] if fortran_order else shape, dtype)
        buffer = memoryview(array.reshape(-1)).cast("B")
        done = 0
        while done < nbytes:  # readinto may stop short; zipfile checks the CRC at the end
            n = f.readinto(buffer[done:])
            if not n:
                raise EOFError(f"member {name!r} ends after {done} of {nbytes} bytes")
            done += n
        return array.T if fortran_order else array


def _fail(path, field, expected, value):
    raise ValueError(f"{path!r}: {field} must be {expected}, got {value!r}")


def _check_meta(path, meta):
    """Every field of the meta of its JSON type, every size within ``LIMITS`` (nothing built yet)."""
    if not isinstance(meta, dict):
        _fail(path, "meta", "a JSON object", type(meta).__name__)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a numpy-retinanet checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path!r} has checkpoint version {meta.get('version')}, this code reads {VERSION}")
    for field, kind, name in (("model", dict, "a JSON object"), ("train_config", dict, "a JSON object"),
                              ("has_optimizer", bool, "true or false")):
        if not isinstance(meta.get(field), kind):
            _fail(path, f"meta[{field!r}]", name, meta.get(field))
    if not is_int(meta.get("step")) or meta["step"] < 0:
        _fail(path, "meta['step']", "an int >= 0", meta.get("step"))
    if not isinstance(meta.get("extra", {}), dict):
        _fail(path, "meta['extra']", "a JSON object", meta["extra"])
    model = meta["model"]
    num_classes = model.get("num_classes")
    if not is_int(num_classes) or not 1 <= num_classes <= LIMITS["num_classes"]:
        _fail(path, "model num_classes", f"an int in [1, {LIMITS['num_classes']}]", num_classes)
    if model.get("dtype") not in ("float32", "float64"):
        _fail(path, "model dtype", "'float32' or 'float64'", model.get("dtype"))
    if not is_int(model.get("seed")) or model["seed"] < 0:
        _fail(path, "model seed", "an int >= 0", model.get("seed"))
    if not isinstance(model.get("preset"), str) or not isinstance(model.get("overrides", {}), dict):
        _fail(path, "model preset and overrides", "a string and a JSON object",
              (model.get("preset"), model.get("overrides")))
    if model["preset"] == RESNET50_FPN:  # torchvision's architecture: fixed, no preset settings to bound
        try:
            check_resnet50_fpn_config(model)
        except ValueError as e:
            raise ValueError(f"{path!r}: model: {e}") from e
    else:
        _check_preset_settings(path, model)
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != num_classes
                              or not all(isinstance(n, str) for n in names)):
        _fail(path, "class_names", f"{num_classes} strings (one per class)", names)
    ids = meta.get("category_ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) != num_classes or not all(map(is_int, ids))
                            or len(set(ids)) != num_classes):
        _fail(path, "category_ids", f"{num_classes} distinct ints (one per class)", ids)
    if meta["train_config"]:  # empty: saved outside the trainer (tests, export of such a file)
        try:
            config = TrainConfig.from_dict(meta["train_config"])
            config.validate()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path!r}: train_config: {e}") from e
        for key in ("image_size", "batch_size"):
            if getattr(config, key) > LIMITS[key]:
                _fail(path, f"train_config {key}", f"at most {LIMITS[key]}", getattr(config, key))


def _check_preset_settings(path, model):
    """A preset's settings with the model's overrides, each within ``LIMITS``."""
    try:
        cfg = resolve_config(model["preset"], model.get("overrides", {}))
    except ValueError as e:
        raise ValueError(f"{path!r}: model: {e}") from e
    for key in ("aspect_ratios", "scales"):
        if len(cfg[key]) > LIMITS[key + "_len"]:
            _fail(path, f"model {key}", f"at most {LIMITS[key + '_len']} entries", list(cfg[key]))
    for key, value in cfg.items():
        if key in LIMITS and max(value if isinstance(value, tuple) else (value,)) > LIMITS[key]:
            _fail(path, f"model {key}", f"at most {LIMITS[key]}", value)


def _check_momentum(path, meta, params, optim):
    """The momentum buffers of a checkpoint saved with its optimizer: one per parameter, of its
    shape, finite and at most ``LIMITS["momentum_abs"]`` in size (resuming with a missing one
    would silently restart it at zero; a blown-up one would blow up the first step)."""
    if not meta["has_optimizer"]:
        return
    missing = sorted(set(params) - set(optim))
    if missing:
        raise ValueError(f"{path!r}: momentum must be saved for every parameter, got none for {missing[:5]}")
    for name, v in optim.items():
        field = f"momentum {name!r}"
        if name not in params or v.shape != params[name].shape or v.dtype.kind != "f":
            shape = params[name].shape if name in params else None
            _fail(path, field, f"a float array of its parameter's shape {shape}", f"{v.dtype} {v.shape}")
        if v.size and not np.isfinite(v).all():
            _fail(path, field, "finite", "NaN or inf values")
        if v.size and np.abs(v).max() > LIMITS["momentum_abs"]:
            _fail(path, field, f"at most {LIMITS['momentum_abs']:g} in absolute value", float(np.abs(v).max()))


def export_weights(checkpoint, out):
    """Write the parameters of ``checkpoint`` to ``out`` without the optimizer's state: the file to
    share or ship. The meta (model, training settings, class names, loss history) is kept, so the
    file loads with ``load_checkpoint`` and names what it was trained on. Returns ``out``.
    """
    meta, params, _ = read_checkpoint(checkpoint)
    if os.path.exists(out) and os.path.samefile(checkpoint, out):
        # Written over itself, a run's checkpoint would lose the momentum and settings it resumes from.
        raise ValueError(f"the export would replace the checkpoint it reads ({os.fspath(out)!r}) with its "
                         "parameters alone; write it to another file")
    model = build_model(meta["model"])
    try:
        model.load_state_dict(params)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} does not fit its model: {e}") from e
    return save_checkpoint(out, model, None, step=meta["step"], train_config=meta["train_config"],
                           extra=meta.get("extra", {}), class_names=meta.get("class_names"),
                           category_ids=meta.get("category_ids"))


def load_checkpoint(path):
    """Load a checkpoint into a new model.

    Returns
    -------
    model : RetinaNet with the saved parameters.
    info : dict with "step", "model" (config), "train_config", "class_names" (K names, in
        label order), "category_ids" (K ids, in label order: the COCO-format dataset's, else
        1..K), "extra" and "optimizer" (the momentum buffers, or None).
    """
    meta, params, optim = _read(path)
    try:
        model = build_model(meta["model"])
        model.load_state_dict(params)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {os.fspath(path)!r} does not fit its model: {e}") from e
    _check_momentum(os.fspath(path), meta, params, optim)  # after the fit: a shape error names the parameter
    info = {"step": meta["step"], "model": meta["model"], "train_config": meta["train_config"],
            "class_names": _class_names(meta.get("class_names"), meta["train_config"], model.num_classes),
            "category_ids": meta.get("category_ids") or list(range(1, model.num_classes + 1)),
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


def _category_ids(ids, num_classes):
    """``ids`` checked to be K distinct ints, as a list of Python ints."""
    ids = list(ids)
    if len(ids) != num_classes or not all(map(is_int, ids)) or len(set(ids)) != num_classes:
        raise ValueError(f"category_ids must be {num_classes} distinct ints (one per class), got {ids!r}")
    return [int(i) for i in ids]
