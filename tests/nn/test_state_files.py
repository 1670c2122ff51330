"""State files and state dicts under hostile input: checked from the headers, read bounded by
what they declare, loaded atomically, and never holding NaN, infinities or negative variances."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from refimpl import models
from refimpl.nn import BatchNorm1d, Linear, ReLU, Sequential, load_state_file
from refimpl.quantization import SharedWeights


def _npz(path, members: dict, *, bomb: tuple[str, tuple[int, ...]] | None = None) -> None:
    """Write an ``.npz`` (deflated) member by member; ``bomb = (name, shape)`` adds a float32
    member of that shape streamed as zeros (about 1000:1 deflated), never built in memory."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, value in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(value), allow_pickle=True)
            zf.writestr(name + ".npy", buf.getvalue())
        if bomb is not None:
            name, shape = bomb
            with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                header = {"descr": "<f4", "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(fh, header)
                zeros = b"\0" * (1 << 20)
                for _ in range(int(np.prod(shape)) * 4 >> 20):
                    fh.write(zeros)


def _meta(count: int, version=1) -> dict:
    return {"__format__": np.array("refimpl-state-dict"), "__version__": np.array(version),
            "__count__": np.array(count)}  # fmt: skip


def _model() -> Sequential:
    return Sequential(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1))


def test_save_writes_exactly_the_path_given(tmp_path):
    m = _model()
    m.save(tmp_path / "weights.bin")  # np.savez appended .npz, and load then failed
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
    back = _model().load(tmp_path / "weights.bin")
    assert all(np.array_equal(a, b) for a, b in zip(m.state_dict().values(),
                                                    back.state_dict().values(), strict=True))
    m.save(str(tmp_path / "w"))
    assert (tmp_path / "w").exists() and not (tmp_path / "w.npz").exists()


def test_a_deflated_bomb_is_refused_from_its_header(tmp_path, peak_memory):
    # 32 KB whose fc1.weight inflates to 32 MiB: every array used to be loaded before its
    # name and shape were checked against the model
    m = _model()
    state = m.state_dict()
    path = tmp_path / "bomb.npz"
    _npz(path, {**_meta(4), **{k: v for k, v in state.items() if k != "fc1.weight"}},
         bomb=("fc1.weight", (4096, 2048)))  # fmt: skip
    assert path.stat().st_size < 50_000
    out = peak_memory(m.load, path)
    assert isinstance(out.error, ValueError), out
    assert "fc1.weight must have shape (3, 4)" in str(out.error) and "bomb.npz" in str(out.error)
    assert out.peak < 2 << 20, out
    # without a model, the limit on entries refuses it, again from the header
    out = peak_memory(load_state_file, path, max_elements=1000)
    assert isinstance(out.error, ValueError) and "max_elements" in str(out.error), out
    assert out.peak < 2 << 20, out
    # an unknown member is refused before anything is read
    _npz(path, {**_meta(5), **state}, bomb=("extra", (4096, 2048)))
    out = peak_memory(m.load, path)
    assert isinstance(out.error, ValueError) and "unexpected ['extra']" in str(out.error), out
    assert out.peak < 2 << 20, out


def test_a_member_is_read_only_as_far_as_its_header_declares(tmp_path, peak_memory):
    # a header declaring (3, 4) in front of 32 MiB of deflated zeros: the zip entry's size
    # disagrees with the header and is refused; nothing is inflated
    m = _model()
    state = m.state_dict()
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, value in {**_meta(4), **state}.items():
            with zf.open(name + ".npy", "w") as fh:
                np.lib.format.write_array(fh, np.asarray(value))
                if name == "fc1.weight":
                    for _ in range(32):
                        fh.write(b"\0" * (1 << 20))
    out = peak_memory(m.load, path)
    assert isinstance(out.error, ValueError) and "header declares" in str(out.error), out
    assert out.peak < 2 << 20, out


def test_foreign_and_damaged_files_name_the_file(tmp_path):
    m = _model()
    state = m.state_dict()
    cases = {
        "random.npz": np.random.default_rng(0).bytes(4000),  # used to say "pickled data"
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}.*(corrupt|not a refimpl)") as info:
            m.load(tmp_path / name)
        assert "pickle" not in str(info.value)
    for name, meta, match in [
        ("v17.npz", _meta(4, version=1.7), "__version__ must be an integer"),
        ("v2.npz", _meta(4, version=2), "format version 2"),
        ("count.npz", _meta(5), "count mismatch"),
        ("marker.npz", {**_meta(4), "__format__": np.array("other")}, "not a refimpl state"),
    ]:
        _npz(tmp_path / name, {**meta, **state})
        with pytest.raises(ValueError, match=match) as info:
            m.load(tmp_path / name)
        assert name in str(info.value)
    _npz(tmp_path / "obj.npz", {**_meta(4), **state, "fc1.bias": np.array([{}], dtype=object)})
    with pytest.raises(ValueError, match="fc1.bias holds Python objects"):
        load_state_file(tmp_path / "obj.npz")
    _npz(tmp_path / "kind.npz", {**_meta(4), **state, "fc1.bias": np.array(["a", "b", "c"])})
    with pytest.raises(ValueError, match="fc1.bias has dtype <U1, not a numeric array"):
        m.load(tmp_path / "kind.npz")
    m["fc1"].parametrize("weight", SharedWeights.from_weight(m["fc1"].weight, 4))
    state = m.state_dict()
    state["fc1.weight.indices"] = state["fc1.weight.indices"] + 0.5  # float cluster indices
    _npz(tmp_path / "kind.npz", {**_meta(len(state)), **state})
    with pytest.raises(ValueError, match="fc1.weight.indices must be of a kind castable to int32"):
        m.load(tmp_path / "kind.npz")


def test_load_state_dict_is_atomic():
    m = _model()
    before = m.state_dict()
    bad = {k: v + 1 for k, v in before.items()}
    bad["fc2.weight"] = np.zeros((5, 5), np.float32)  # checked last in order: seven other
    with pytest.raises(ValueError, match="fc2.weight must have shape"):  # tensors were written
        m.load_state_dict(bad)
    assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())
    nan = {k: v + 1 for k, v in before.items()}
    nan["fc2.bias"][0] = np.nan
    with pytest.raises(ValueError, match="fc2.*bias holds NaN"):
        m.load_state_dict(nan)
    assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(TypeError, match="state must be a mapping"):
        m.load_state_dict([1, 2])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_and_negative_variances_are_refused(tmp_path, value):
    m = Sequential(Linear(4, 3, rng=0), BatchNorm1d(3))
    state = m.state_dict()
    state["fc1.weight"][1, 2] = value
    with pytest.raises(ValueError, match="weight holds NaN or infinite"):
        m.load_state_dict(state)
    _npz(tmp_path / "nan.npz", {**_meta(len(state)), **state})
    with pytest.raises(ValueError, match="nan.npz.*weight holds NaN"):
        m.load(tmp_path / "nan.npz")
    state = m.state_dict()
    state["bn1.running_var"][0] = -1.0
    with pytest.raises(ValueError, match="running_var holds negative"):
        m.load_state_dict(state)
    assert (m["bn1"].buffers["running_var"] == 1).all()


def test_state_files_round_trip_every_baseline_kind(tmp_path):
    for make in (models.digits_mlp, models.digits_cnn):
        m = make(rng=3)
        m.save(tmp_path / "m.npz")
        back = make(rng=4).load(tmp_path / "m.npz")
        state = load_state_file(tmp_path / "m.npz")
        for k, v in m.state_dict().items():
            assert np.array_equal(back.state_dict()[k], v) and np.array_equal(state[k], v)
            assert state[k].flags.writeable and state[k].flags.c_contiguous
