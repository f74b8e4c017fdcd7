"""Recurrent simulation of GLMs with spike history and coupling.

A GLM fitted on ``[stimulus features | spike history]`` (the history built by
``TimeLagger(n_lags, min_lag=1)`` from the spike counts of all recorded
neurons, see :mod:`sklearn_cnnenc.preprocessing`) predicts each bin from the
*recorded* past. :func:`simulate` instead runs the model forward in time,
feeding its own sampled spikes back as history, which is how one checks that a
fitted history GLM produces realistic spike trains (refractoriness, bursting,
stability; Pillow et al. 2008).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array

__all__ = ["simulate"]


def simulate(
    model,
    stimulus=None,
    n_steps: int | None = None,
    *,
    n_history: int,
    history_min_lag: int = 1,
    initial_spikes=None,
    random_state=None,
    return_rate: bool = False,
):
    """Sample spike trains from a history-dependent GLM, one bin at a time.

    At bin ``t`` the linear predictor of neuron ``k`` is its stimulus drive
    ``stimulus[t] @ w_k + b_k`` plus the history term
    ``sum_lag sum_j H[k, lag, j] * spikes[t - lag, j]``, with the model's
    history coefficients laid out as ``TimeLagger(n_history,
    min_lag=history_min_lag)`` lays out the columns of the spike counts
    (lag-major: column ``i * n_neurons + j`` is lag ``history_min_lag + i``
    of neuron ``j``). The new counts are drawn from the model's family and
    become history for the following bins.

    Parameters
    ----------
    model : fitted estimator
        A :class:`~sklearn_cnnenc.PoissonGLM` (or any object with ``coef_``,
        ``intercept_``, ``link_``, ``family_`` and ``dispersion_``) fitted on
        ``np.hstack([stimulus, history])`` with the history of **all**
        ``n_neurons`` modelled neurons, in the order of its outputs.
    stimulus : array-like of shape (n_steps, n_stimulus_features), optional
        The stimulus part of the design matrix (already lagged or projected,
        exactly as in training). ``None`` for a model without stimulus terms.
    n_steps : int, optional
        Number of bins to simulate; default ``len(stimulus)``.
    n_history : int
        Number of history lags per neuron.
    history_min_lag : int, default=1
        First history lag; must be at least 1 (a bin cannot depend on itself).
    initial_spikes : array-like of shape (n_before, n_neurons), optional
        Spike counts just before the first simulated bin (most recent last);
        missing history is zero, as in ``TimeLagger(padding="zero")``.
    random_state : int, RandomState instance or None
    return_rate : bool, default=False
        Also return the conditional mean of every bin given the simulated past.

    Returns
    -------
    spikes : ndarray of shape (n_steps, n_neurons), or (n_steps,) for a model
        fitted on one-dimensional ``y``
    rate : ndarray, same shape
        Only with ``return_rate=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.preprocessing import TimeLagger
    >>> from sklearn_cnnenc.simulation import simulate
    >>> rng = np.random.default_rng(0)
    >>> stimulus = rng.normal(size=(3000, 1))
    >>> spikes = rng.poisson(np.exp(-1.0 + 0.5 * stimulus))
    >>> history = TimeLagger(n_lags=5, min_lag=1).fit_transform(spikes.astype(float))
    >>> glm = PoissonGLM(alpha=1e-3).fit(np.hstack([stimulus, history]), spikes[:, 0])
    >>> simulated = simulate(glm, stimulus, n_history=5, random_state=0)
    >>> simulated.shape
    (3000,)
    """
    missing = [a for a in ("coef_", "intercept_", "link_", "family_") if not hasattr(model, a)]
    if missing:
        raise NotFittedError(
            f"simulate needs a fitted GLM with coef_, intercept_, link_ and family_; "
            f"{type(model).__name__} has no {', '.join(missing)}."
        )
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=float))
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=float), (len(coef),))
    n_neurons, n_coef = coef.shape
    if not isinstance(n_history, Integral) or n_history < 1:
        raise ValueError(f"n_history must be a positive integer; got {n_history!r}.")
    if not isinstance(history_min_lag, Integral) or history_min_lag < 1:
        raise ValueError(
            "history_min_lag must be at least 1: a bin's own count cannot be part of "
            f"its history; got {history_min_lag!r}."
        )
    n_history_coef = n_history * n_neurons
    n_stimulus = n_coef - n_history_coef
    if n_stimulus < 0:
        raise ValueError(
            f"The model has {n_coef} coefficients per neuron, fewer than the "
            f"n_history * n_neurons = {n_history_coef} history terms."
        )
    if stimulus is None:
        if n_stimulus:
            raise ValueError(f"The model expects {n_stimulus} stimulus feature(s); got none.")
        if n_steps is None:
            raise ValueError("n_steps is required when there is no stimulus.")
        stimulus = np.zeros((n_steps, 0))
    else:
        stimulus = check_array(stimulus, input_name="stimulus", ensure_2d=False)
        stimulus = stimulus.reshape(len(stimulus), -1)
        if stimulus.shape[1] != n_stimulus:
            raise ValueError(
                f"stimulus has {stimulus.shape[1]} feature(s) but the model's coefficients "
                f"leave {n_stimulus} for it (n_coef={n_coef} minus n_history * n_neurons = "
                f"{n_history_coef})."
            )
    if n_steps is None:
        n_steps = len(stimulus)
    if not isinstance(n_steps, Integral) or not 1 <= n_steps <= len(stimulus):
        raise ValueError(
            f"n_steps must be an integer between 1 and len(stimulus)={len(stimulus)}; "
            f"got {n_steps!r}."
        )

    max_lag = history_min_lag + n_history - 1
    # spikes[max_lag + t] is bin t; the first max_lag rows hold the initial history
    spikes = np.zeros((max_lag + n_steps, n_neurons))
    if initial_spikes is not None:
        initial = check_array(initial_spikes, input_name="initial_spikes", ensure_2d=False)
        initial = initial.reshape(len(initial), -1)
        if initial.shape[1] != n_neurons:
            raise ValueError(
                f"initial_spikes must have {n_neurons} column(s) (one per neuron); "
                f"got {initial.shape[1]}."
            )
        initial = initial[-max_lag:]
        spikes[max_lag - len(initial) : max_lag] = initial

    drive = stimulus[:n_steps] @ coef[:, :n_stimulus].T + intercept
    # history[k, i, j]: weight of neuron j's count at lag history_min_lag + i on neuron k
    history = coef[:, n_stimulus:].reshape(n_neurons, n_history, n_neurons)
    # rows of the spike buffer read at bin t, most recent lag first
    offsets = max_lag - history_min_lag - np.arange(n_history)
    family, link = model.family_, model.link_
    dispersion = getattr(model, "dispersion_", None)
    rng = check_random_state(random_state)
    rate = np.empty((n_steps, n_neurons))
    # the recurrence is sequential in time; every step is vectorised over
    # neurons and lags
    for t in range(n_steps):
        eta = drive[t] + np.einsum("kij,ij->k", history, spikes[t + offsets])
        mean = link.inverse(torch.from_numpy(eta)).numpy()
        rate[t] = mean
        spikes[max_lag + t] = family.sample(mean, dispersion, rng)

    spikes = spikes[max_lag:]
    if np.ndim(model.coef_) == 1:
        spikes, rate = spikes[:, 0], rate[:, 0]
    return (spikes, rate) if return_rate else spikes
