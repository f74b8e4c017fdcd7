"""Simulated neurons whose true parameters are known."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state

from ..distributions import get_family

__all__ = ["make_glm_data"]


def make_glm_data(
    n_samples: int = 1000,
    n_features: int = 10,
    n_neurons: int = 1,
    family: str = "poisson",
    *,
    link: str = "auto",
    modulation: float = 0.5,
    dispersion: float | None = None,
    random_state=None,
) -> Bunch:
    """Responses of neurons that follow a generalised linear model exactly.

    Features are standard normal; each neuron's coefficients are drawn so
    that its linear predictor has standard deviation ``modulation``, and its
    intercept so that its mean rate lies between about 0.5 and 2 events per
    bin (Bernoulli: probabilities around 0.3-0.6; Gaussian: means around 0).

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=10
    n_neurons : int, default=1
        With 1, ``y`` and ``coef`` have no neuron axis (as a fitted model's).
    family : str, default="poisson"
        Observation family used to draw responses.
    link : str, default="auto"
        Inverse link; ``"auto"`` is the family's default.
    modulation : float, default=0.5
        Standard deviation of the stimulus-driven part of the linear predictor.
    dispersion : float, optional
        Noise variance (gaussian, default 1.0) or over-dispersion (negative
        binomial, default 0.5).
    random_state : int, RandomState instance or None

    Returns
    -------
    data : Bunch
        ``X`` (n_samples, n_features); ``y`` (n_samples,) or (n_samples,
        n_neurons); ``coef`` (n_features,) or (n_neurons, n_features);
        ``intercept`` float or (n_neurons,); ``mean``, the true expected
        responses shaped like ``y``; ``dispersion`` (n_neurons,) or None.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> data = make_glm_data(n_samples=100, n_features=4, n_neurons=2, random_state=0)
    >>> data.X.shape, data.y.shape, data.coef.shape
    ((100, 4), (100, 2), (2, 4))
    """
    family_obj = get_family(family)
    link_obj = family_obj.check_link(family_obj.default_link if link == "auto" else link)
    rng = check_random_state(random_state)

    X = rng.standard_normal((n_samples, n_features))
    coef = rng.standard_normal((n_neurons, n_features)) * modulation / np.sqrt(n_features)
    if link_obj.name == "identity":
        intercept = rng.uniform(-0.5, 0.5, n_neurons)
    elif link_obj.name == "logit":
        intercept = rng.uniform(-1.0, 0.5, n_neurons)
    else:
        intercept = link_obj.link(rng.uniform(0.5, 2.0, n_neurons))
    eta = X @ coef.T + intercept
    mean = link_obj.inverse(torch.as_tensor(eta)).numpy()

    if family_obj.has_dispersion:
        value = family_obj.default_dispersion if dispersion is None else dispersion
        dispersion_array = np.full(family_obj.dispersion_shape(n_neurons), value, dtype=float)
    else:
        dispersion_array = None
    y = family_obj.sample(mean, dispersion_array, rng)

    if n_neurons == 1:
        return Bunch(X=X, y=y[:, 0], coef=coef[0], intercept=float(intercept[0]),
                     mean=mean[:, 0], dispersion=dispersion_array)
    return Bunch(X=X, y=y, coef=coef, intercept=intercept, mean=mean,
                 dispersion=dispersion_array)
