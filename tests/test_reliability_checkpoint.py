"""Issue 16 for checkpoints: bounded memory, typed meta, checked momentum, run-file permissions, no stale .tmp.

Each bad file is a good checkpoint with one thing changed, and must be refused with a ValueError that
names the file and the field, before anything large is allocated.
"""

import json
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from numpy_retinanet.engine.checkpoint import LIMITS, load_checkpoint, read_checkpoint, save_checkpoint
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.optim import SGD


@pytest.fixture()
def good(tmp_path):
    model = RetinaNet(2, preset="tiny", seed=1)
    opt = SGD(model.params, lr=0.1, momentum=0.9)
    opt.step({k: np.ones_like(v) for k, v in model.params.items()})
    config = TrainConfig(preset="tiny", iterations=10, batch_size=2, image_size=64).to_dict()
    path = tmp_path / "good.npz"
    save_checkpoint(path, model, opt, step=3, train_config=config, class_names=["a", "b"])
    return path


def rewrite(good, tmp_path, name, meta_change=None, optim_change=None, meta=None):
    """A copy of ``good`` saved as ``name`` with its meta or momentum buffers changed."""
    m, params, optim = read_checkpoint(good)
    if meta_change:
        meta_change(m)
    if optim_change:
        optim_change(optim)
    out = tmp_path / name
    np.savez(out, meta=np.array(json.dumps(m if meta is None else meta)),
             **{f"param/{k}": v for k, v in params.items()}, **{f"optim/{k}": v for k, v in optim.items()})
    return out


def assert_refused(path, *fields):
    for reader in (read_checkpoint, load_checkpoint):
        with pytest.raises(ValueError) as err:
            reader(path)
        for text in (path.name, *fields):
            assert text in str(err.value), (text, str(err.value))


@pytest.mark.fault("silent")
def test_good_file_passes_every_check(good):
    meta, params, optim = read_checkpoint(good)
    assert meta["step"] == 3 and set(optim) == set(params)


@pytest.mark.parametrize("case, change, fields", [
    ("iterations_str", lambda m: m["train_config"].update(iterations="10"), ["train_config", "iterations"]),
    ("short_names", lambda m: m.update(class_names=["a"]), ["class_names", "2 strings"]),
    ("int_names", lambda m: m.update(class_names=["a", 7]), ["class_names"]),
    ("step_str", lambda m: m.update(step="3"), ["step"]),
    ("model_list", lambda m: m.update(model=[1, 2]), ["model"]),
    ("train_config_list", lambda m: m.update(train_config=[1]), ["train_config"]),
    ("optimizer_str", lambda m: m.update(has_optimizer="yes"), ["has_optimizer"]),
    ("classes_str", lambda m: m["model"].update(num_classes="2"), ["num_classes"]),
    ("dtype", lambda m: m["model"].update(dtype="object"), ["dtype"]),
])
@pytest.mark.fault("traceback")
def test_meta_of_the_wrong_type_is_refused(good, tmp_path, case, change, fields):
    assert_refused(rewrite(good, tmp_path, f"{case}.npz", meta_change=change), *fields)


@pytest.mark.fault("traceback")
def test_meta_that_is_not_an_object_is_refused(good, tmp_path):
    assert_refused(rewrite(good, tmp_path, "list.npz", meta=[1, 2, 3]), "meta", "JSON object")


@pytest.mark.parametrize("field, change", [
    ("num_classes", lambda m: m["model"].update(num_classes=LIMITS["num_classes"] + 1)),
    ("fpn_channels", lambda m: m["model"]["overrides"].update(fpn_channels=LIMITS["fpn_channels"] + 1)),
    ("widths", lambda m: m["model"]["overrides"].update(widths=[4, 4, 8, LIMITS["widths"] + 1])),
    ("scales", lambda m: m["model"]["overrides"].update(scales=[1.0] * (LIMITS["scales_len"] + 1))),
    ("image_size", lambda m: m["train_config"].update(image_size=LIMITS["image_size"] + 1)),
    ("batch_size", lambda m: m["train_config"].update(batch_size=LIMITS["batch_size"] + 1)),
])
@pytest.mark.fault("memory")
def test_sizes_in_the_meta_are_bounded(good, tmp_path, field, change):
    path = rewrite(good, tmp_path, f"huge_{field}.npz", meta_change=change)
    tracemalloc.start()
    try:
        assert_refused(path, field, str(LIMITS[field] if field in LIMITS else LIMITS[field + "_len"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20  # refused from the meta, before a model of that size is built


def first_key(optim):
    return sorted(optim)[0]


@pytest.mark.parametrize("case, change, fields", [
    ("missing", lambda o: o.pop(first_key(o)), ["momentum", "every parameter"]),
    ("all_missing", lambda o: o.clear(), ["momentum", "every parameter"]),
    ("nan", lambda o: o[first_key(o)].flat.__setitem__(0, np.nan), ["momentum", "finite"]),
    ("inf", lambda o: o[first_key(o)].flat.__setitem__(0, -np.inf), ["momentum", "finite"]),
    ("huge", lambda o: o[first_key(o)].__imul__(1e30), ["momentum", "at most"]),
    ("shape", lambda o: o.update({first_key(o): np.zeros(3, np.float32)}), ["momentum", "shape"]),
    ("int", lambda o: o.update({first_key(o): o[first_key(o)].astype(np.int32)}), ["momentum", "float"]),
])
@pytest.mark.fault("silent")
def test_bad_momentum_is_refused(good, tmp_path, case, change, fields):
    path = rewrite(good, tmp_path, f"momentum_{case}.npz", optim_change=change)
    assert_refused(path, *fields)


@pytest.mark.fault("silent")
def test_momentum_just_within_the_limit_is_kept(good, tmp_path):
    def scale(o):
        k = first_key(o)
        o[k][...] = 0
        o[k].flat[0] = LIMITS["momentum_abs"]
    _, info = load_checkpoint(rewrite(good, tmp_path, "edge.npz", optim_change=scale))
    assert np.abs(info["optimizer"][first_key(info["optimizer"])]).max() == LIMITS["momentum_abs"]


@pytest.mark.fault("small")
def test_a_directory_is_named_a_directory(tmp_path):
    folder = tmp_path / "run.npz"
    folder.mkdir()
    for reader in (read_checkpoint, load_checkpoint):
        with pytest.raises(ValueError, match="run.npz.*is a directory"):
            reader(folder)


def patch_central_sizes(path, size, prefix=""):
    """Set the declared uncompressed size, in the zip's central directory, of every member whose name
    starts with ``prefix`` to ``size``: a file that claims what a zip bomb holds."""
    data = bytearray(path.read_bytes())
    start = 0
    while (i := data.find(b"PK\x01\x02", start)) >= 0:
        (name_len,) = struct.unpack("<H", data[i + 28:i + 30])  # central header: name length at 28, name at 46
        if data[i + 46:i + 46 + name_len].decode().startswith(prefix):
            data[i + 24:i + 28] = struct.pack("<I", size)  # uncompressed size at offset 24
        start = i + 4
    path.write_bytes(bytes(data))


@pytest.mark.fault("memory")
def test_declared_member_size_over_the_limit_is_refused_before_reading(good, tmp_path):
    bomb = tmp_path / "bomb.npz"
    bomb.write_bytes(good.read_bytes())
    patch_central_sizes(bomb, LIMITS["member_bytes"] + 1)
    assert {i.file_size for i in zipfile.ZipFile(bomb).infolist()} == {LIMITS["member_bytes"] + 1}
    assert_refused(bomb, "uncompressed", str(LIMITS["member_bytes"]))


@pytest.mark.fault("memory")
def test_a_meta_over_its_limit_is_refused(good, tmp_path):
    bomb = tmp_path / "long_meta.npz"
    bomb.write_bytes(good.read_bytes())
    patch_central_sizes(bomb, LIMITS["meta_bytes"] + 1, prefix="meta")
    assert_refused(bomb, "meta.npy", str(LIMITS["meta_bytes"]))


@pytest.mark.fault("memory")
def test_members_over_the_total_limit_are_refused(good, tmp_path):
    bomb = tmp_path / "total.npz"
    bomb.write_bytes(good.read_bytes())
    patch_central_sizes(bomb, LIMITS["member_bytes"], prefix="param/")  # each allowed, together far over
    assert_refused(bomb, "together")


@pytest.mark.fault("memory")
def test_an_array_header_claiming_more_than_its_member_allocates_nothing(good, tmp_path):
    """A header that declares 2 GiB over 16 bytes of data: np.load would allocate the array first."""
    m, params, _ = read_checkpoint(good)
    liar = tmp_path / "liar.npz"
    header = {"descr": "<f4", "fortran_order": False, "shape": (2**29,)}
    npy = bytearray()
    np.lib.format.write_array_header_1_0(_Sink(npy), header)
    with zipfile.ZipFile(liar, "w") as z:
        z.writestr("meta.npy", _npy(np.array(json.dumps(m))))
        z.writestr("param/x.npy", bytes(npy) + bytes(16))
    tracemalloc.start()
    try:
        assert_refused(liar, "param/x", "bytes")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20


class _Sink:
    def __init__(self, buf):
        self.buf = buf

    def write(self, b):
        self.buf.extend(b)


def _npy(array):
    buf = bytearray()
    np.lib.format.write_array(_Sink(buf), array, allow_pickle=False)
    return bytes(buf)


@pytest.mark.fault("small")
def test_checkpoint_mode_follows_the_umask_like_other_run_files(good, tmp_path):
    old = os.umask(0o022)
    try:
        model, _ = load_checkpoint(good)
        path = tmp_path / "fresh.npz"
        save_checkpoint(path, model)
        other = tmp_path / "metrics.json"
        other.write_text("{}")
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(other.stat().st_mode & 0o777) == oct(0o644)


@pytest.mark.fault("small")
def test_a_leftover_tmp_from_a_killed_save_is_replaced_by_the_next_save(good, tmp_path):
    model, _ = load_checkpoint(good)
    path = tmp_path / "ck.npz"
    leftover = tmp_path / ".ck.npz.tmp"
    leftover.write_bytes(b"half a checkpoint" * 1000)  # what SIGKILL during a save leaves
    save_checkpoint(path, model, step=5)
    assert sorted(os.listdir(tmp_path)) == sorted(["good.npz", "ck.npz"])
    assert read_checkpoint(path)[0]["step"] == 5


@pytest.mark.fault("small")
def test_a_failed_save_leaves_no_tmp(good, tmp_path, monkeypatch):
    model, _ = load_checkpoint(good)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ck.npz", model)
    assert os.listdir(tmp_path) == ["good.npz"]
