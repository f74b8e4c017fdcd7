import json
import pickle
from datetime import datetime, timezone

import joblib
import numpy as np
import pytest

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.io import bin_spike_times, load_model, load_npz, load_nwb, save_model


def test_load_npz_reads_arrays_and_optional_groups(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.ones((6, 2)), y=np.arange(6.0), groups=np.repeat([0, 1], 3))
    data = load_npz(path)
    assert data.X.shape == (6, 2) and data.y.tolist() == list(range(6))
    assert data.groups.tolist() == [0, 0, 0, 1, 1, 1]
    np.savez(path, X=np.ones((6, 2)), y=np.arange(6.0))
    assert load_npz(path).groups is None


@pytest.mark.parametrize(
    ("arrays", "error", "message"),
    [
        (None, FileNotFoundError, "No such file"),
        ({"X": np.ones((3, 2))}, ValueError, r"lacks the array\(s\) \['y'\]"),
        ({"X": np.ones((3, 2)), "y": np.ones(4)}, ValueError, "X has 3 samples but y has 4"),
        ("garbage", ValueError, "not a readable .npz"),
        ("truncated", ValueError, "not a readable .npz"),
    ],
)
def test_load_npz_errors_name_the_problem(tmp_path, arrays, error, message):
    path = tmp_path / "data.npz"
    if isinstance(arrays, dict):
        np.savez(path, **arrays)
    elif arrays == "garbage":
        path.write_text("not an archive")
    elif arrays == "truncated":
        np.savez(path, X=np.ones((30, 2)), y=np.ones(30))
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(error, match=message):
        load_npz(path)


def test_bin_spike_times_equals_numpy_histograms():
    rng = np.random.default_rng(0)
    spikes = [np.sort(rng.uniform(0, 10, n)) for n in (50, 0, 200)]
    edges = np.linspace(0, 10, 41)
    expected = np.column_stack([np.histogram(t, edges)[0] for t in spikes])
    # np.histogram closes the last bin on the right; no spike sits exactly on 10
    np.testing.assert_array_equal(bin_spike_times(spikes, edges), expected)


@pytest.fixture
def nwb_file(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    nwbfile = pynwb.NWBFile(session_description="test", identifier="test-1",
                            session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    frames = np.random.default_rng(0).standard_normal((100, 4, 5))
    nwbfile.add_stimulus(pynwb.image.ImageSeries(name="movie", data=frames, unit="a.u.",
                                                 rate=10.0, starting_time=0.0))
    rng = np.random.default_rng(1)
    spikes = [np.sort(rng.uniform(0, 10, n)) for n in (30, 80)]
    for times in spikes:
        nwbfile.add_unit(spike_times=times)
    path = tmp_path / "session.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path, frames, spikes


def test_load_nwb_bins_units_on_stimulus_frames(nwb_file):
    path, frames, spikes = nwb_file
    data = load_nwb(path, stimulus="movie")
    np.testing.assert_array_equal(data.X, frames)
    edges = np.arange(101) / 10.0
    expected = np.column_stack([np.histogram(t, edges)[0] for t in spikes])
    np.testing.assert_array_equal(data.y, expected)
    assert data.y.sum() == 110 and data.time[1] == pytest.approx(0.1)


def test_load_nwb_with_a_bin_size_holds_the_frame_shown(nwb_file):
    path, frames, _ = nwb_file
    data = load_nwb(path, bin_s=0.05)
    assert len(data.X) == len(data.y) == len(data.time)
    np.testing.assert_array_equal(data.X[0], frames[0])
    np.testing.assert_array_equal(data.X[1], frames[0])  # 0.05 s: frame 0 still shown
    np.testing.assert_array_equal(data.X[2], frames[1])


@pytest.mark.parametrize("bin_s", [0.1, 0.05, 0.03])
def test_load_nwb_bin_size_keeps_the_last_frame_and_every_spike(nwb_file, bin_s):
    path, frames, spikes = nwb_file
    data = load_nwb(path, bin_s=bin_s)
    # 100 frames of 0.1 s: the bins cover [0, 10 s), the last frame included
    assert len(data.y) == int(np.ceil(10.0 / bin_s - 1e-9))
    assert data.y.sum() == sum(len(t) for t in spikes) == 110
    np.testing.assert_array_equal(data.X[-1], frames[-1])


def test_load_npz_without_y_when_not_required(tmp_path):
    path = tmp_path / "stimuli.npz"
    np.savez(path, X=np.ones((4, 2)))
    assert load_npz(path, require_y=False).y is None
    with pytest.raises(ValueError, match="lacks the array"):
        load_npz(path)


def test_load_nwb_errors_name_the_problem(nwb_file, tmp_path):
    path, _, _ = nwb_file
    with pytest.raises(ValueError, match="No time series named 'sound'.*movie"):
        load_nwb(path, stimulus="sound")
    not_nwb = tmp_path / "fake.nwb"
    not_nwb.write_text("hello")
    with pytest.raises(ValueError, match="not a readable NWB file"):
        load_nwb(not_nwb)
    with pytest.raises(FileNotFoundError):
        load_nwb(tmp_path / "missing.nwb")


def test_saved_model_predicts_identically_after_loading(tmp_path):
    data = make_glm_data(n_samples=300, n_features=3, n_neurons=2, random_state=0)
    model = PoissonGLM(alpha=1e-3).fit(data.X, data.y)
    loaded = load_model(save_model(model, tmp_path / "model.joblib"))
    np.testing.assert_array_equal(loaded.predict(data.X), model.predict(data.X))


def test_model_from_another_version_is_refused_with_both_versions(tmp_path):
    path = tmp_path / "old.joblib"
    with path.open("wb") as handle:
        handle.write(json.dumps({"format": "sklearn-cnnenc-model",
                                 "versions": {"sklearn_cnnenc": "0.0.1", "scikit-learn": "1.9.0",
                                              "torch": "2.13.0"}}).encode() + b"\n")
        joblib.dump(PoissonGLM(), handle)
    with pytest.raises(ValueError, match="saved with sklearn_cnnenc 0.0.1 but"):
        load_model(path)
    other = tmp_path / "other.joblib"
    joblib.dump({"something": 1}, other)
    with pytest.raises(ValueError, match="not a model saved by"):
        load_model(other)


def test_a_foreign_pickle_is_refused_without_being_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "foreign.joblib"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError, match="not a model saved by"):
        load_model(path)
