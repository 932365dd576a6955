"""Checkpoints: round trip without pickle, atomic writes, clear errors for bad files."""

import json
import os
import zipfile

import numpy as np
import pytest

from numpy_retinanet.engine.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.optim import SGD


@pytest.fixture()
def saved(tmp_path):
    model = RetinaNet(2, preset="tiny", seed=3)
    opt = SGD(model.params, lr=0.1)
    opt.step({k: np.ones_like(v) for k, v in model.params.items()})
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, opt, step=7, train_config={"lr": 0.1}, extra={"note": "x"})
    return path, model, opt


def test_round_trip(saved):
    path, model, opt = saved
    loaded, info = load_checkpoint(path)
    assert info["step"] == 7 and info["train_config"] == {"lr": 0.1} and info["extra"] == {"note": "x"}
    assert loaded.config() == model.config()
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    for k, v in opt.velocity.items():
        np.testing.assert_array_equal(info["optimizer"][k], v)


def test_no_pickle_inside(saved):
    path, _, _ = saved
    with np.load(path, allow_pickle=False) as z:  # would raise on any object array
        for name in z.files:
            assert z[name].dtype != object


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_checkpoint(tmp_path / "nothing.npz")


def test_truncated_file(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        load_checkpoint(bad)


def test_foreign_npz_and_non_zip(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(ValueError, match="foreign.npz.*not a numpy-retinanet checkpoint"):
        load_checkpoint(foreign)
    for name, content in (("text.npz", b"hello"), ("empty.npz", b""), ("head.npz", b"\x93NUMPY")):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}.*not an .npz archive") as err:
            load_checkpoint(bad)
        assert "unsafe" not in str(err.value)  # no advice to unpickle a stranger's file
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array(json.dumps({"format": "numpy-retinanet-checkpoint", "version": 1})),
             evil=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz"):
        load_checkpoint(pickled)


def test_mismatched_parameters(saved, tmp_path):
    path, model, _ = saved
    meta, params, _ = read_checkpoint(path)
    key = next(iter(params))
    params[key] = np.zeros((1, 2, 3), np.float32)
    bad = tmp_path / "mismatch.npz"
    np.savez(bad, meta=np.array(json.dumps(meta)), **{f"param/{k}": v for k, v in params.items()})
    with pytest.raises(ValueError, match=r"mismatch.npz.*shape"):
        load_checkpoint(bad)


def test_atomic_write_keeps_old_file_on_failure(saved, monkeypatch):
    path, model, opt = saved
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)  # the writer save_checkpoint uses
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, step=8)
    assert path.read_bytes() == before
    assert [f for f in os.listdir(path.parent) if f.endswith(".tmp")] == []  # the temporary file is gone
    assert zipfile.is_zipfile(path)
