import numpy as np
import pytest

from sklearn_cnnenc.stimuli import (
    gabor_patch,
    gratings,
    natural_image_patches,
    phase_scramble,
    phase_shift,
    pink_noise,
)


def _radial_power(images):
    """Mean power spectrum of square images, binned by integer radial frequency."""
    size = images.shape[-1]
    power = (np.abs(np.fft.fft2(images - images.mean(axis=(1, 2), keepdims=True))) ** 2).mean(0)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radius = np.rint(np.hypot(fy, fx) * size).astype(int)
    return np.bincount(radius.ravel(), power.ravel()) / np.bincount(radius.ravel())


def _slope(power, frequencies):
    return np.polyfit(np.log(frequencies), np.log(power), 1)[0]


def test_natural_patches_shape_scale_and_reproducibility():
    patches = natural_image_patches(400, size=12, random_state=0)
    assert patches.shape == (400, 12, 12)
    assert abs(patches.mean()) < 0.2 and 0.6 < patches.std() < 1.4
    np.testing.assert_array_equal(patches, natural_image_patches(400, 12, random_state=0))
    assert not np.array_equal(patches, natural_image_patches(400, 12, random_state=1))


def test_whitening_flattens_the_power_spectrum_of_natural_images():
    raw = natural_image_patches(2000, size=32, whiten=False, random_state=0)
    white = natural_image_patches(2000, size=32, whiten=True, random_state=0)
    freqs = np.arange(2, 10)  # cycles per patch, below the whitening roll-off
    raw_slope = _slope(_radial_power(raw)[2:10], freqs)
    white_slope = _slope(_radial_power(white)[2:10], freqs)
    # natural images have power ~ 1/f^2; whitening removes most of that fall-off
    assert raw_slope < -1.5
    assert abs(white_slope) < 0.6
    # neighbouring pixels decorrelate (not fully: the filter's roll-off near
    # Nyquist keeps some correlation, on purpose)
    def neighbour_correlation(x):
        return np.corrcoef(x[:, :, :-1].ravel(), x[:, :, 1:].ravel())[0, 1]

    assert neighbour_correlation(raw) > 0.9
    assert neighbour_correlation(white) < 0.5


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_pink_noise_1d_has_the_requested_spectral_slope(exponent):
    noise = pink_noise(200, 512, exponent=exponent, random_state=0)
    assert noise.shape == (200, 512)
    np.testing.assert_allclose(noise.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(noise.std(axis=1), 1.0)
    power = (np.abs(np.fft.rfft(noise, axis=1)) ** 2).mean(0)
    freqs = np.fft.rfftfreq(512)
    keep = slice(2, 200)
    assert _slope(power[keep], freqs[keep]) == pytest.approx(-exponent, abs=0.1)


def test_pink_noise_2d_images():
    noise = pink_noise(300, (32, 32), exponent=2.0, random_state=0)
    assert noise.shape == (300, 32, 32)
    freqs = np.arange(2, 12)
    assert _slope(_radial_power(noise)[2:12], freqs) == pytest.approx(-2.0, abs=0.3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: natural_image_patches(0), "n_patches"),
        (lambda: natural_image_patches(10, size=1000), "size"),
        (lambda: pink_noise(0, 10), "n_samples"),
        (lambda: pink_noise(3, (1, 10)), "shape"),
    ],
)
def test_bad_stimulus_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------ parametric stimuli

def test_gratings_follow_the_documented_formula_over_the_parameter_grid():
    orientations, phases = [0.0, 0.7], [0.0, 1.0, 2.0]
    stimuli = gratings((9, 11), orientation=orientations, frequency=0.2, phase=phases,
                       amplitude=2.0)
    assert stimuli.X.shape == (6, 9, 11)
    # the first parameter varies slowest
    np.testing.assert_array_equal(stimuli.orientation, np.repeat(orientations, 3))
    np.testing.assert_array_equal(stimuli.phase, np.tile(phases, 2))
    y, x = np.mgrid[0:9, 0:11]
    for image, theta, phase in zip(stimuli.X, stimuli.orientation, stimuli.phase, strict=True):
        along = (x - 5) * np.cos(theta) + (y - 4) * np.sin(theta)
        np.testing.assert_allclose(image, 2.0 * np.cos(2 * np.pi * 0.2 * along + phase))
    # orientation 0: vertical stripes with a period of 1 / frequency pixels
    vertical = gratings(16, orientation=0.0, frequency=0.25).X[0]
    np.testing.assert_allclose(vertical, vertical[:1].repeat(16, axis=0))
    np.testing.assert_allclose(vertical[:, :-4], vertical[:, 4:], atol=1e-12)


def test_gabor_patch_is_a_windowed_grating_centred_where_asked():
    patch = gabor_patch(21, orientation=0.3, frequency=0.15, phase=0.4, sigma=3.0, aspect=2.0,
                        center=(8.0, 11.0)).X[0]
    y, x = np.mgrid[0:21, 0:21]
    along = (x - 8) * np.cos(0.3) + (y - 11) * np.sin(0.3)
    across = -(x - 8) * np.sin(0.3) + (y - 11) * np.cos(0.3)
    envelope = np.exp(-(along**2 + (across / 2.0) ** 2) / 18.0)
    np.testing.assert_allclose(patch, envelope * np.cos(2 * np.pi * 0.15 * along + 0.4))
    grid = gabor_patch(16, sigma=[1.0, 2.0], center=[(4, 4), (10, 12)])
    assert grid.X.shape == (4, 16, 16) and grid.center.shape == (4, 2)
    # each patch peaks (phase 0) at its own centre
    peaks = [np.unravel_index(np.argmax(image), image.shape) for image in grid.X]
    assert peaks == [(4, 4), (12, 10), (4, 4), (12, 10)]


def _amplitude(images):
    return np.abs(np.fft.fft2(images))


@pytest.mark.parametrize("shape", [(6, 16, 16), (5, 15, 12), (3, 2, 9, 10)])
def test_phase_scramble_keeps_the_amplitude_spectrum_and_randomises_phase(shape):
    images = natural_image_patches(int(np.prod(shape[:-2])), size=max(shape[-2:]),
                                   random_state=0)
    images = images[:, : shape[-2], : shape[-1]].reshape(shape)
    scrambled = phase_scramble(images, random_state=1)
    assert scrambled.shape == images.shape and scrambled.dtype == np.float64
    np.testing.assert_allclose(_amplitude(scrambled), _amplitude(images), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scrambled.mean(axis=(-2, -1)), images.mean(axis=(-2, -1)),
                               atol=1e-12)
    change = np.angle(np.fft.fft2(scrambled) / np.fft.fft2(images))
    change = change[..., 1:, 1:]  # away from the mean and its axes
    # uniform phase offsets: their mean resultant length is near zero
    assert abs(np.exp(1j * change).mean()) < 0.1
    assert np.abs(scrambled - images).max() > 0.5


def test_phase_scramble_draws_new_phases_per_image_and_is_reproducible():
    image = natural_image_patches(1, size=12, random_state=0)[0]
    batch = np.stack([image, image])
    scrambled = phase_scramble(batch, random_state=0)
    assert not np.allclose(scrambled[0], scrambled[1])
    np.testing.assert_array_equal(scrambled, phase_scramble(batch, random_state=0))
    single = phase_scramble(image, random_state=3)
    assert single.shape == (12, 12)
    signal = pink_noise(4, 64, random_state=0)
    scrambled_1d = phase_scramble(signal, axes=(-1,), random_state=0)
    np.testing.assert_allclose(np.abs(np.fft.fft(scrambled_1d)), np.abs(np.fft.fft(signal)),
                               atol=1e-9)


def test_phase_shift_moves_periodic_gratings_and_keeps_every_amplitude():
    theta = np.arctan2(3, 4)  # 4 and 3 periods across a 32 x 32 image
    base = gratings(32, orientation=theta, frequency=5 / 32).X[0]
    for shift in (0.5, np.pi / 2, 2.0):
        expected = gratings(32, orientation=theta, frequency=5 / 32, phase=shift).X[0]
        np.testing.assert_allclose(phase_shift(base, shift, orientation=theta), expected,
                                   atol=1e-12)
    images = natural_image_patches(4, size=15, random_state=0)
    shifted = phase_shift(images, np.array([0.0, 1.0, 2.0, np.pi]), orientation=0.4)
    np.testing.assert_allclose(_amplitude(shifted), _amplitude(images), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(shifted[0], images[0], atol=1e-12)
    # shifting back undoes it; a full turn is the identity
    np.testing.assert_allclose(phase_shift(shifted, -np.array([0.0, 1.0, 2.0, np.pi]),
                                           orientation=0.4), images, atol=1e-12)
    np.testing.assert_allclose(phase_shift(images, 2 * np.pi, orientation=1.0), images,
                               atol=1e-12)
    # broadcasting: one image, many angles and directions
    assert phase_shift(images[0], np.zeros((3, 1)), orientation=np.zeros(2)).shape == (3, 2, 15, 15)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gratings(0), "size"),
        (lambda: gratings((4, 4, 4)), "size"),
        (lambda: gratings(8, frequency=np.nan), "frequency"),
        (lambda: gabor_patch(8, sigma=0.0), "sigma must be positive"),
        (lambda: gabor_patch(8, center=(1, 2, 3)), "center"),
        (lambda: phase_scramble(np.ones(5)), "at least 2 dimension"),
        (lambda: phase_scramble(np.ones((3, 4)) + 1j), "real numeric"),
        (lambda: phase_scramble(np.full((4, 4), np.nan)), "NaN"),
        (lambda: phase_shift(np.ones((3, 4, 4)), np.zeros(2)), "broadcast"),
    ],
)
def test_bad_parametric_stimulus_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
