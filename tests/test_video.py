"""Movie core: causality, shapes, direction selectivity learned (a last-frame CNN cannot)."""

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from sklearn_cnnenc import CNNEncoder
from sklearn_cnnenc.datasets import make_direction_selective_cells
from sklearn_cnnenc.nn import CausalCore3d, FactorizedReadout, VideoPredictor


def test_core_is_causal_in_time():
    torch.manual_seed(0)
    core = CausalCore3d(1, (8, 10, 10), channels=3, kernel_size=3, temporal_kernel_size=3).eval()
    x = torch.randn(2, 1, 8, 10, 10)
    changed = x.clone()
    changed[:, :, 5:] += torch.randn(2, 1, 3, 10, 10)
    a, b = core(x), core(changed)
    # frames before the change are untouched, the changed ones differ
    assert torch.allclose(a[:, :, :5], b[:, :, :5])
    assert not torch.allclose(a[:, :, 5:], b[:, :, 5:])


def test_receptive_field_in_time_is_exact():
    torch.manual_seed(0)
    core = CausalCore3d(1, (10, 9, 9), channels=2, kernel_size=3, temporal_kernel_size=[3, 2])
    assert core.receptive_field == (4, 5, 5)
    x = torch.zeros(1, 1, 10, 9, 9, requires_grad=True)
    core.eval()(x)[0, :, -1].sum().backward()
    frames = x.grad[0, 0].abs().sum((1, 2)) > 0
    assert frames.tolist() == [False] * 6 + [True] * 4


def test_predictor_crops_to_receptive_field():
    core = CausalCore3d(2, (3, 8, 8), channels=2, kernel_size=3, temporal_kernel_size=2)
    predictor = VideoPredictor(core, FactorizedReadout(2, core.output_size, 4), crop=3).eval()
    x = torch.randn(5, 7, 2, 8, 8)
    early = x.clone()
    early[:, :4] = 0.0  # frames the core cannot see
    assert predictor(x).shape == (5, 4)
    assert torch.allclose(predictor(x), predictor(early))


def test_video_layouts_and_validation():
    data = make_direction_selective_cells(n_samples=40, n_cells=2, image_size=8, random_state=0)
    model = CNNEncoder(
        n_layers=1, channels=2, kernel_size=3, temporal_kernel_size=3, input_type="video",
        max_epochs=1, device="cpu", random_state=0,
    ).fit(data.X, data.y)
    assert model.input_shape_ == (6, 1, 8, 8)
    assert model.receptive_field_ == (3, 3, 3)
    assert model.input_type_ == "video"
    # (n, T, 1, H, W) predicts the same as (n, T, H, W)
    np.testing.assert_allclose(model.predict(data.X[:, :, None]), model.predict(data.X))
    with pytest.raises(ValueError, match="features"):
        model.predict(data.X[:, :5])
    with pytest.raises(ValueError, match="temporal receptive field"):
        CNNEncoder(input_type="video", temporal_kernel_size=7, device="cpu").fit(data.X, data.y)
    with pytest.raises(ValueError, match="does not support pooling"):
        CNNEncoder(input_type="video", pooling="max", device="cpu").fit(data.X, data.y)
    with pytest.raises(ValueError, match="Movies need"):
        CNNEncoder(input_type="video", device="cpu").fit(data.X[:, 0, 0], data.y)


def test_simulator_is_direction_selective():
    data = make_direction_selective_cells(n_samples=2000, n_cells=4, noise=0.0, random_state=0)
    # responses to the preferred direction beat those to the opposite one
    for k, preferred in enumerate(data.preferred_direction):
        gap = np.angle(np.exp(1j * (data.direction - preferred)))
        near = np.abs(gap) < np.pi / 8
        opposite = np.abs(gap) > 7 * np.pi / 8
        assert data.mean[near, k].mean() > 3 * data.mean[opposite, k].mean()


COMMON = dict(n_layers=1, channels=8, kernel_size=7, max_epochs=15, lr=1e-2, device="cpu",
              random_state=0)


@pytest.fixture(scope="module")
def ds_fit():
    data = make_direction_selective_cells(n_samples=800, random_state=0)
    video = CNNEncoder(input_type="video", temporal_kernel_size=4, **COMMON)
    return data, video.fit(data.X[:600], data.y[:600])


def test_movie_core_beats_last_frame_cnn_on_direction_selective_cells(ds_fit):
    data, video = ds_fit
    train, test = slice(0, 600), slice(600, None)
    image = CNNEncoder(**COMMON).fit(data.X[train][:, -1], data.y[train])
    video_score = video.score(data.X[test], data.y[test])
    image_score = image.score(data.X[test][:, -1], data.y[test])
    oracle = poisson.logpmf(data.y[test], data.mean[test]).mean()
    null = poisson.logpmf(data.y[test], data.y[train].mean(0)).mean()
    # the movie model recovers most of the explainable log-likelihood, the
    # image model less than half of it
    assert (video_score - null) / (oracle - null) > 0.6
    assert (image_score - null) / (oracle - null) < 0.5
    assert video_score > image_score + 0.1


def test_cli_fits_a_movie_model_from_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    from sklearn_cnnenc.cli import main
    from sklearn_cnnenc.io import load_hdf5, load_model

    data = make_direction_selective_cells(n_samples=60, n_cells=2, image_size=8, random_state=0)
    path = tmp_path / "movies.h5"
    with h5py.File(path, "w") as f:
        f["X"], f["y"] = data.X, data.y
    loaded = load_hdf5(path)
    assert type(loaded.X).__name__ == "LazyArray" and loaded.groups is None
    out = tmp_path / "model.joblib"
    status = main([
        "fit", "--data", str(path), "--model", "cnn", "--input-type", "video",
        "--param", "max_epochs=1", "--param", "channels=2", "--param", "kernel_size=3",
        "--param", "temporal_kernel_size=2", "--param", "device='cpu'", "--out", str(out),
    ])
    assert status == 0
    model = load_model(out)
    assert model.input_type_ == "video" and model.predict(loaded.X).shape == (60, 2)


def test_receptive_field_in_space_and_time_and_most_exciting_movie(ds_fit):
    from sklearn_cnnenc.inspection import empirical_receptive_field, most_exciting_input

    data, model = ds_fit
    X = data.X[600:632]
    # a core unit sees exactly the receptive field: 4 frames x 7 x 7 pixels,
    # the last 4 frames of the window
    field = empirical_receptive_field(model, X)
    assert field.mask.shape == (6, 12, 12)
    assert field.extent == model.receptive_field_ == (4, 7, 7)
    assert not field.mask[:2].any()
    neuron_field = empirical_receptive_field(model, X, neuron=0)
    assert neuron_field.mask.shape == (6, 12, 12) and not neuron_field.mask[:2].any()
    # the most exciting input is a movie that moves in the cell's preferred
    # direction: its motion energy under the cell's true filters beats that
    # of the same movie played backwards (the null direction)
    for k in range(2):
        movie = most_exciting_input(model, k, n_steps=100, n_init=2, random_state=0).stimulus
        assert movie.shape == (6, 12, 12)
        lags = data.filters.shape[2]

        def energy(m, k=k, lags=lags):
            recent = m[::-1][:lags]
            return float((np.einsum("lhw,qlhw->q", recent, data.filters[k]) ** 2).sum())

        assert energy(movie) > 2 * energy(movie[::-1])
