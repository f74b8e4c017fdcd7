import numpy as np
import pytest

from sklearn_cnnenc.stimuli import natural_image_patches, pink_noise


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
