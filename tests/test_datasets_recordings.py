import numpy as np
import pytest
from scipy.io import savemat

from sklearn_cnnenc.datasets import load_grasshopper_auditory, load_hippocampus_linear_track
from sklearn_cnnenc.inspection import spike_triggered_average

GRASSHOPPER = "grasshopper-auditory"
HIPPOCAMPUS = "hippocampus-linear-track"


# ---------------------------------------------------------------- grasshopper
@pytest.mark.parametrize("which, n_spikes", [(1, 929), (2, 868)])
def test_grasshopper_shapes_units_and_spike_totals(shared_data_dir, which, n_spikes):
    data = load_grasshopper_auditory(shared_data_dir / GRASSHOPPER, which=which)
    assert data.stimulus.shape == data.counts.shape == data.time.shape == (10000,)
    assert data.counts.dtype == np.float64 and data.counts.sum() == n_spikes
    assert len(data.spike_times) == n_spikes
    # dB SPL: maximum 76.4286 dB; the file's floor is 36 dB below its maximum
    assert data.stimulus.max() == pytest.approx(76.4286, abs=1e-10)
    assert 38 < data.stimulus.min() < 46
    np.testing.assert_allclose(data.time, (np.arange(10000) + 0.5) * 1e-3)
    assert data.bin_ms == 1.0 and data.which == which
    # every spike is counted in the bin that contains it
    spike_us = np.round(data.spike_times * 1e6)  # the file's clock: whole microseconds
    expected = np.bincount((spike_us // 1000).astype(int), minlength=10000)
    np.testing.assert_array_equal(data.counts, expected)


def test_grasshopper_envelope_has_the_6_db_standard_deviation_of_the_protocol(shared_data_dir):
    # the recording header: "standard deviation (dB): 6"
    data = load_grasshopper_auditory(shared_data_dir / GRASSHOPPER, which=1)
    assert data.stimulus.std() == pytest.approx(6.0, abs=0.5)


@pytest.mark.parametrize("which", [1, 2])
def test_grasshopper_stimulus_and_spikes_are_aligned(shared_data_dir, which):
    data = load_grasshopper_auditory(shared_data_dir / GRASSHOPPER, which=which)
    sta = spike_triggered_average(data.stimulus, data.counts, n_lags=40)[:, 0]
    # a receptor neuron fires a few milliseconds after loud sound
    assert 3 <= int(np.argmax(sta)) <= 12
    shifted = spike_triggered_average(data.stimulus, np.roll(data.counts, 5000), n_lags=40)
    assert sta.max() > 5 * np.abs(shifted).max()


def test_grasshopper_coarser_bins_keep_every_spike(shared_data_dir):
    data = load_grasshopper_auditory(shared_data_dir / GRASSHOPPER, bin_ms=2.5)
    assert data.counts.shape == (4000,) and data.counts.sum() == 929
    assert data.stimulus.max() == pytest.approx(76.4286)


def _write_grasshopper(folder, time_us, amplitude, spikes_us):
    folder.mkdir(exist_ok=True)
    np.savetxt(folder / "grasshopper_stimulus1.txt", np.column_stack([time_us, amplitude]))
    with open(folder / "grasshopper_spike_times1.txt", "w") as f:
        f.write("# a header line\n")
        f.writelines(f"{t}\n" for t in spikes_us)
    return folder


def test_a_raw_carrier_is_demodulated_to_its_envelope(tmp_path):
    time_us = np.arange(40000) * 50.0
    seconds = time_us * 1e-6
    envelope = 0.5 + 0.3 * np.sin(2 * np.pi * 20 * seconds)
    carrier = envelope * np.sin(2 * np.pi * 2500 * seconds)
    folder = _write_grasshopper(tmp_path / "carrier", time_us, carrier, [1000.0, 5000.0])
    data = load_grasshopper_auditory(folder, bin_ms=1.0)
    binned = envelope.reshape(-1, 20).mean(axis=1)
    expected = 20 * np.log10(binned)
    expected += 76.4286 - expected.max()
    # away from the edges of the recording (the Hilbert transform's end effects)
    np.testing.assert_allclose(data.stimulus[50:-50], expected[50:-50], atol=0.05)


def test_grasshopper_bad_files_are_clear_errors(tmp_path):
    time_us = np.arange(100) * 50.0
    amplitude = np.full(100, 0.5)
    gappy = np.delete(time_us, 40)
    folder = _write_grasshopper(tmp_path / "gap", gappy, amplitude[:99], [100.0])
    with pytest.raises(ValueError, match="not contiguous"):
        load_grasshopper_auditory(folder)
    folder = _write_grasshopper(tmp_path / "unsorted", time_us, amplitude, [300.0, 100.0])
    with pytest.raises(ValueError, match="not sorted"):
        load_grasshopper_auditory(folder)
    folder = _write_grasshopper(tmp_path / "fine", time_us, amplitude, [100.0])
    with pytest.raises(ValueError, match="shorter than the stimulus sampling interval"):
        load_grasshopper_auditory(folder, bin_ms=0.01)
    with pytest.raises(ValueError, match="which must be 1 or 2"):
        load_grasshopper_auditory(folder, which=3)
    with pytest.raises(FileNotFoundError):
        load_grasshopper_auditory(tmp_path / "absent")


# ---------------------------------------------------------------- hippocampus
@pytest.fixture(scope="module")
def hippocampus(shared_data_dir):
    return load_hippocampus_linear_track(shared_data_dir / HIPPOCAMPUS)


def test_hippocampus_shapes_units_and_spike_totals(hippocampus):
    data = hippocampus
    n_bins = len(data.time)
    assert data.counts.shape == (n_bins, 31) and data.counts.dtype == np.float64
    assert data.position.shape == data.tracked.shape == (n_bins,)
    assert data.tracked.dtype == bool
    assert len(data.unit_names) == len(set(data.unit_names)) == 31
    assert all(name.startswith("tetrode") and "_unit" in name for name in data.unit_names)
    assert sum(len(t) for t in data.spike_times) == 28829
    # counted: exactly the spikes inside the tracked span, in their own bins
    edges = np.append(data.time - data.bin_s / 2, data.time[-1] + data.bin_s / 2)
    for k, times in enumerate(data.spike_times):
        np.testing.assert_array_equal(data.counts[:, k], np.histogram(times, edges)[0])
    assert 28829 - 10 < data.counts.sum() <= 28829
    np.testing.assert_allclose(np.diff(data.time), 0.05, atol=1e-9)
    # about half an hour of tracking at 60 Hz
    assert 1900 < data.time[-1] - data.time[0] < 2000


def test_hippocampus_position_is_cleaned_of_dropouts(hippocampus):
    data = hippocampus
    # x along the track in pixels, within the tracked range of the 640-pixel camera
    assert 100 < data.position.min() and data.position.max() < 600
    assert np.all(np.isfinite(data.position))
    assert 0.9 < data.tracked.mean() < 1.0
    # a rat runs at most a few hundred pixels per second
    speed = np.abs(np.diff(data.position)) / data.bin_s
    assert np.percentile(speed, 99.9) < 1000


def test_hippocampus_units_have_place_fields(hippocampus):
    data = hippocampus
    tracked = data.tracked
    bins = np.linspace(data.position.min(), data.position.max(), 41)
    occupancy = np.histogram(data.position[tracked], bins)[0]
    spikes = np.stack([np.histogram(data.position[tracked], bins,
                                    weights=data.counts[tracked, k])[0] for k in range(31)])
    rate_map = spikes / np.maximum(occupancy, 1)
    mean_rate = data.counts[tracked].sum(axis=0) / tracked.sum()
    # spikes and positions share one clock: most units fire at one place
    assert np.sum(rate_map.max(axis=1) > 5 * mean_rate) >= 15


def _write_hippocampus(folder, unit_times, records):
    folder.mkdir(exist_ok=True)
    tetrode = np.empty(len(unit_times), dtype=object)
    for j, times in enumerate(unit_times):
        tetrode[j] = {"time": np.asarray(times, dtype=float)}
    spikes = np.empty(2, dtype=object)
    spikes[0] = tetrode
    spikes[1] = np.empty(0, dtype=object)  # an unsorted tetrode
    savemat(folder / "spikes.mat", {"spikes": spikes})
    header = b"<Start settings>\nclockrate: 30000\n<End settings>\n"
    body = np.array(records, dtype=[("time", "<u4"), ("x", "<u2"), ("y", "<u2"),
                                    ("x2", "<u2"), ("y2", "<u2")]).tobytes()
    (folder / "trajectory.videoPositionTracking").write_bytes(header + body)
    return folder


def test_hippocampus_dropouts_are_interpolated_linearly(tmp_path):
    # 10 samples 0.1 s apart; samples 3-5 lost (y = 479), x 100 -> 180 around them
    ticks = np.arange(10) * 3000
    x = [100, 110, 120, 999, 999, 999, 160, 170, 180, 190]
    y = [200, 200, 200, 479, 479, 1, 200, 200, 200, 200]
    records = [(t, xi, yi, 0, 0) for t, xi, yi in zip(ticks, x, y, strict=True)]
    folder = _write_hippocampus(tmp_path / "rec", [[0.05, 0.12, 0.31], [0.5]], records)
    data = load_hippocampus_linear_track(folder, bin_s=0.1)
    assert data.unit_names == ["tetrode1_unit1", "tetrode1_unit2"]
    np.testing.assert_allclose(data.time, np.arange(9) * 0.1 + 0.05)
    # the lost samples lie on the line from x=120 (t=0.2) to x=160 (t=0.6)
    np.testing.assert_allclose(data.position, [105, 115, 125, 135, 145, 155, 165, 175, 185])
    np.testing.assert_array_equal(data.tracked, [True, True, False, False, False, False,
                                                 True, True, True])
    np.testing.assert_array_equal(data.counts[:, 0], [1, 1, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(data.counts[:, 1], [0, 0, 0, 0, 0, 1, 0, 0, 0])


def test_hippocampus_bad_files_are_clear_errors(tmp_path):
    records = [(t, 100, 200, 0, 0) for t in range(0, 30000, 500)]
    folder = _write_hippocampus(tmp_path / "unsorted", [[0.3, 0.1]], records)
    with pytest.raises(ValueError, match="tetrode1_unit1 are not sorted"):
        load_hippocampus_linear_track(folder)
    backwards = records[::-1]
    folder = _write_hippocampus(tmp_path / "backwards", [[0.1]], backwards)
    with pytest.raises(ValueError, match="tracking timestamps .* not sorted"):
        load_hippocampus_linear_track(folder)
    folder = _write_hippocampus(tmp_path / "short", [[0.1]], records)
    with pytest.raises(ValueError, match="longer than the tracked span"):
        load_hippocampus_linear_track(folder, bin_s=5.0)
    with pytest.raises(ValueError, match="bin_s must be a positive number"):
        load_hippocampus_linear_track(folder, bin_s=0)
