import numpy as np
import pytest
import torch

from sklearn_cnnenc.links import LINKS, get_link

POSITIVE_LINKS = ["exp", "softplus", "elu1", "logit"]


@pytest.mark.parametrize("name", POSITIVE_LINKS)
def test_log_inverse_equals_log_of_inverse_where_both_are_finite(name):
    link = get_link(name)
    eta = torch.linspace(-15, 15, 301, dtype=torch.float64)
    np.testing.assert_allclose(
        link.log_inverse(eta).numpy(), torch.log(link.inverse(eta)).numpy(), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("name", POSITIVE_LINKS)
def test_log_inverse_stays_finite_where_the_mean_underflows(name):
    link = get_link(name)
    eta = torch.tensor([-800.0, -1e4], dtype=torch.float64)
    assert torch.all(link.inverse(eta) == 0) or name == "logit"
    log_mean = link.log_inverse(eta)
    assert torch.all(torch.isfinite(log_mean))
    np.testing.assert_allclose(log_mean.numpy(), eta.numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", ["exp", "softplus", "elu1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_linear_predictor_gives_finite_mean_and_gradient(name, dtype):
    link = get_link(name)
    eta = torch.tensor([50.0, 1e4, 1e30], dtype=dtype, requires_grad=True)
    mean = link.inverse(eta)
    assert torch.all(torch.isfinite(mean))
    assert torch.all(torch.diff(mean) > 0)  # still increasing
    mean.sum().backward()
    assert torch.all(torch.isfinite(eta.grad)) and torch.all(eta.grad > 0)


def test_exp_link_is_exact_below_threshold_and_continuous_at_it():
    link = get_link("exp")
    eta = torch.tensor([-3.0, 0.0, 29.999999, 30.0, 30.000001], dtype=torch.float64)
    mean = link.inverse(eta)
    np.testing.assert_allclose(mean[:4].numpy(), np.exp(eta[:4].numpy()), rtol=1e-12)
    np.testing.assert_allclose(mean[4].item(), np.exp(30.0) * (1 + np.log1p(1e-6)), rtol=1e-9)


@pytest.mark.parametrize("name", sorted(LINKS))
def test_link_inverts_inverse_link(name):
    link = get_link(name)
    eta = np.linspace(-3, 3, 13)
    mean = link.inverse(torch.as_tensor(eta)).numpy()
    np.testing.assert_allclose(link.link(mean), eta, atol=1e-10)


def test_unknown_link_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown link 'cube'"):
        get_link("cube")
