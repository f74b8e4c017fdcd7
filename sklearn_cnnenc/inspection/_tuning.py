"""Probing a fitted model like a neuron: most exciting inputs, tuning curves, phase invariance."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state

from ..stimuli import gratings, phase_shift
from ..utils import evaluating, limits_threads
from ._models import (
    as_model_input,
    check_fitted_encoder,
    is_cnn_encoder,
    linear_predictor,
    predict,
    sample_shape,
    user_sample_shape,
)

__all__ = [
    "most_exciting_input",
    "phase_invariance_index",
    "preferred_grating",
    "tuning_curve",
]

# images per prediction call of phase_invariance_index (memory, not speed)
_MAX_VALUES_PER_CHUNK = 2_000_000


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


@limits_threads
def most_exciting_input(
    model,
    neuron: int,
    *,
    norm: float | None = None,
    n_steps: int = 200,
    step_size: float = 0.3,
    n_init: int = 4,
    random_state=None,
) -> Bunch:
    """The stimulus of fixed norm that drives one neuron of a model most (MEI).

    Maximises the neuron's linear predictor ``eta_k(x)`` (equivalently its
    predicted rate: inverse links increase) over stimuli with
    ``||x||_2 = norm``, by projected gradient ascent on the sphere: each step
    moves ``x`` along its normalised gradient by ``step_size * norm``
    (decaying to zero along a cosine schedule) and projects back onto the
    sphere. ``n_init`` random starts run as one batch; the best is kept. For
    a GLM the answer is ``norm * w / ||w||`` (its filter); for a CNN it is
    the stimulus the network's mechanism prefers (Walker et al. 2019).

    Parameters
    ----------
    model : fitted PoissonGLM, LNModel or CNNEncoder
    neuron : int
    norm : float, optional
        Euclidean norm of the stimulus; default ``sqrt(n_values)``, the norm
        of a stimulus with unit-variance pixels (the scale of standardised
        or :func:`~sklearn_cnnenc.stimuli.natural_image_patches` stimuli).
    n_steps : int, default=200
    step_size : float, default=0.3
        First step, as a fraction of ``norm``.
    n_init : int, default=4
        Random starts (white noise on the sphere).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    mei : Bunch
        ``stimulus``, shaped like one sample of the model's ``fit``;
        ``response``, the predicted mean response to it; ``linear_predictor``.

    References
    ----------
    .. [1] Walker, E. Y. et al. (2019). Inception loops discover what excites
       neurons most using deep predictive models. Nat. Neurosci. 22, 2060-2065.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> from sklearn_cnnenc.inspection import most_exciting_input
    >>> data = make_glm_data(n_samples=2000, n_features=8, random_state=0)
    >>> glm = PoissonGLM(alpha=1e-3).fit(data.X, data.y)
    >>> mei = most_exciting_input(glm, 0, norm=1.0, random_state=0).stimulus
    >>> bool(np.allclose(mei, glm.coef_ / np.linalg.norm(glm.coef_), atol=1e-3))
    True
    """
    check_fitted_encoder(model, "most_exciting_input")
    if isinstance(neuron, bool) or not isinstance(neuron, Integral):
        raise ValueError(f"neuron must be an integer; got {neuron!r}.")
    if not 0 <= neuron < model.n_outputs_:
        raise ValueError(f"neuron must be in [0, {model.n_outputs_}); got {neuron}.")
    n_steps = _positive_int(n_steps, "n_steps")
    n_init = _positive_int(n_init, "n_init")
    shape = sample_shape(model)
    n_values = int(np.prod(shape))
    if norm is None:
        norm = float(np.sqrt(n_values))
    if not isinstance(norm, Real) or not np.isfinite(norm) or norm <= 0:
        raise ValueError(f"norm must be a positive number; got {norm!r}.")
    if not isinstance(step_size, Real) or not step_size > 0:
        raise ValueError(f"step_size must be positive; got {step_size!r}.")
    rng = check_random_state(random_state)

    def project(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return (flat * (norm / flat.norm(dim=1, keepdim=True).clamp_min(1e-30))).view_as(x)

    x = as_model_input(model, rng.standard_normal((n_init, n_values)))
    x = project(x)
    module = model.module_
    best_x, best_eta = x.clone(), torch.full((n_init,), -torch.inf, dtype=x.dtype)
    with evaluating(module), torch.enable_grad():
        for step in range(n_steps + 1):
            x = x.detach().requires_grad_(True)
            eta = linear_predictor(model, x)[:, neuron]
            with torch.no_grad():
                improved = eta.detach().cpu() > best_eta
                best_eta = torch.where(improved, eta.detach().cpu(), best_eta)
                best_x[improved.to(x.device)] = x.detach()[improved.to(x.device)]
            if step == n_steps:
                break
            (gradient,) = torch.autograd.grad(eta.sum(), x)
            with torch.no_grad():
                flat = gradient.flatten(1)
                direction = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
                rate = step_size * 0.5 * (1 + np.cos(np.pi * step / n_steps))
                x = project(x + (rate * norm * direction).view_as(x))
    winner = int(torch.argmax(best_eta))
    stimulus = best_x[winner : winner + 1]
    with torch.no_grad(), evaluating(module):
        eta = linear_predictor(model, stimulus)[0, neuron]
        response = model.link_.inverse(eta)
    return Bunch(
        stimulus=stimulus.detach().cpu().double().numpy().reshape(user_sample_shape(model)),
        response=float(response),
        linear_predictor=float(eta),
    )


def tuning_curve(model, stimuli, parameter, *, aggregate: str = "mean") -> Bunch:
    """Predicted responses as a function of one stimulus parameter.

    Every stimulus is presented to the model; the responses to stimuli that
    share a value of ``parameter`` are averaged (or maximised) over the
    other parameters: e.g. an orientation tuning curve from gratings of
    every orientation, frequency and phase, or a phase tuning curve (flat
    for complex cells, modulated for simple cells).

    Parameters
    ----------
    model : fitted estimator, or callable ``X -> responses``
        Estimators fitted on flat features get the images flattened.
    stimuli : Bunch or array-like
        The output of :func:`~sklearn_cnnenc.stimuli.gratings` or
        :func:`~sklearn_cnnenc.stimuli.gabor_patch` (``X`` plus one array of
        values per parameter), or an array of stimuli.
    parameter : str or array-like
        Name of the parameter in ``stimuli``, or (with an array of stimuli)
        the parameter value of every stimulus, ``(n,)`` or ``(n, d)``.
    aggregate : {"mean", "max"}, default="mean"
        How the responses to stimuli with the same value are combined.

    Returns
    -------
    curve : Bunch
        ``parameter_values`` (m,) or (m, d), the sorted distinct values;
        ``responses`` (m, n_neurons); ``all_responses`` (n, n_neurons);
        ``parameter``, the name (or None).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.inspection import tuning_curve
    >>> from sklearn_cnnenc.stimuli import gabor_patch, gratings
    >>> filters = gabor_patch(16, orientation=[0.0, np.pi / 2], frequency=0.2).X
    >>> energy = lambda X: (X.reshape(len(X), -1) @ filters.reshape(2, -1).T) ** 2
    >>> probes = gratings(16, orientation=np.linspace(0, np.pi, 4, endpoint=False),
    ...                   frequency=0.2, phase=np.linspace(0, 2 * np.pi, 8, endpoint=False))
    >>> curve = tuning_curve(energy, probes, "orientation")
    >>> curve.responses.argmax(axis=0).tolist()  # preferred orientations 0 and pi / 2
    [0, 2]
    """
    if aggregate not in ("mean", "max"):
        raise ValueError(f"aggregate must be 'mean' or 'max'; got {aggregate!r}.")
    name = None
    if isinstance(parameter, str):
        if not (isinstance(stimuli, dict) and "X" in stimuli):
            raise ValueError(
                f"parameter={parameter!r} names a field of a stimulus Bunch (from gratings or "
                "gabor_patch); with an array of stimuli pass the parameter values instead."
            )
        if parameter not in stimuli or parameter == "X":
            fields = sorted(k for k in stimuli if k != "X")
            raise ValueError(f"Unknown parameter {parameter!r}; the stimuli have {fields}.")
        name, values, X = parameter, np.asarray(stimuli[parameter]), np.asarray(stimuli["X"])
    else:
        X = np.asarray(stimuli["X"] if isinstance(stimuli, dict) else stimuli)
        values = np.asarray(parameter)
    if values.ndim not in (1, 2) or len(values) != len(X):
        raise ValueError(
            f"The parameter needs one value (or row) per stimulus: {len(X)}; got shape "
            f"{values.shape}."
        )
    responses = predict(model, X)
    distinct, inverse = np.unique(values, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    if aggregate == "mean":
        total = np.zeros((len(distinct), responses.shape[1]))
        np.add.at(total, inverse, responses)
        curve = total / np.bincount(inverse)[:, None]
    else:
        curve = np.full((len(distinct), responses.shape[1]), -np.inf)
        np.maximum.at(curve, inverse, responses)
    return Bunch(
        parameter_values=distinct, responses=curve, all_responses=responses, parameter=name
    )


def _check_image_model(model, tool: str) -> None:
    """Reject models that know their inputs are not images (gratings need two spatial axes)."""
    if is_cnn_encoder(model) and getattr(model, "input_type_", "image") != "image":
        raise ValueError(
            f"{tool} shows a model grey-level images, but this {type(model).__name__} was "
            f"fitted on {model.input_type_.replace('_', ' ')} (input_type_="
            f"{model.input_type_!r}, input_shape_={tuple(model.input_shape_)}: channels x "
            "time bins), which have no spatial axes to hold a grating."
        )


def _image_shape(model, image_shape, tool: str, X=None) -> tuple[int, int]:
    # before image_shape: an explicit shape that happens to hold as many values
    # as a time-series sample would be predicted on without complaint
    _check_image_model(model, tool)
    if image_shape is not None:
        shape = tuple(int(s) for s in np.ravel(image_shape))
    elif X is not None and np.ndim(X) >= 3:
        shape = tuple(np.shape(X)[-2:])
    elif is_cnn_encoder(model) and model.input_type_ == "image":
        channels, *shape = model.input_shape_
        if channels != 1:
            raise ValueError(
                f"Gratings are grey-level images; this model takes {channels} channels."
            )
        shape = tuple(shape)
    elif len(getattr(model, "input_shape_", ())) == 2:
        shape = tuple(model.input_shape_)
    else:
        raise ValueError(
            "This model's inputs are not known to be images: pass image_shape=(height, width)."
        )
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"image_shape must be (height, width); got {image_shape!r}.")
    return shape


def preferred_grating(
    model,
    *,
    image_shape=None,
    orientations: int = 16,
    frequencies=None,
    n_phases: int = 8,
    amplitude: float = 1.0,
) -> Bunch:
    """Orientation, spatial frequency and phase of the grating that drives each neuron most.

    Gratings (:func:`~sklearn_cnnenc.stimuli.gratings`) of every
    combination are shown to the model; a neuron's preferred orientation
    and frequency maximise its response averaged over phase (as a
    physiologist would find them with drifting gratings), and its preferred
    phase maximises the response at that orientation and frequency.

    Parameters
    ----------
    model : fitted estimator, or callable ``X -> responses``
    image_shape : (int, int), optional
        Needed when the model's inputs are flat features.
    orientations : int, default=16
        Orientations evenly spaced in [0, pi).
    frequencies : array-like, optional
        Spatial frequencies (cycles per pixel); default: 10 log-spaced from
        one period per image to 0.45.
    n_phases : int, default=8
    amplitude : float, default=1.0

    Returns
    -------
    preferred : Bunch
        ``orientation``, ``frequency``, ``phase`` and ``response`` (the
        best phase-averaged response), each (n_neurons,).

    Raises
    ------
    ValueError
        For a CNNEncoder fitted on time series (no spatial axes), or when the
        image shape is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.inspection import preferred_grating
    >>> from sklearn_cnnenc.stimuli import gabor_patch
    >>> g = gabor_patch(16, orientation=np.pi / 4, frequency=0.25, sigma=3.0).X[0].ravel()
    >>> simple_cell = lambda X: np.maximum(X.reshape(len(X), -1) @ g, 0)[:, None]
    >>> best = preferred_grating(simple_cell, image_shape=(16, 16),
    ...                          frequencies=[0.125, 0.25, 0.375])
    >>> round(float(best.orientation[0]), 3), float(best.frequency[0])
    (0.785, 0.25)
    """
    shape = _image_shape(model, image_shape, "preferred_grating")
    orientations = _positive_int(orientations, "orientations")
    n_phases = _positive_int(n_phases, "n_phases")
    if frequencies is None:
        frequencies = np.geomspace(1.0 / max(shape), 0.45, 10)
    probes = gratings(
        shape,
        orientation=np.arange(orientations) * np.pi / orientations,
        frequency=frequencies,
        phase=np.arange(n_phases) * 2 * np.pi / n_phases,
        amplitude=amplitude,
    )
    n_freq = len(np.atleast_1d(frequencies))
    responses = predict(model, probes.X).reshape(orientations, n_freq, n_phases, -1)
    averaged = responses.mean(axis=2).reshape(orientations * n_freq, -1)
    best = averaged.argmax(axis=0)
    o, f = np.unravel_index(best, (orientations, n_freq))
    neurons = np.arange(averaged.shape[1])
    phase = responses[o, f, :, neurons].argmax(axis=1)
    first = np.arange(0, len(probes.phase), n_phases * n_freq)
    return Bunch(
        orientation=probes.orientation[first][o],
        frequency=np.atleast_1d(np.asarray(frequencies, dtype=float))[f],
        phase=phase * 2 * np.pi / n_phases,
        response=averaged[best, neurons],
    )


def phase_invariance_index(
    model,
    X,
    n_scrambles: int = 8,
    random_state=None,
    *,
    orientation=None,
    image_shape=None,
) -> Bunch:
    """How little each neuron's predicted response changes when local phase is shifted.

    Every stimulus is transformed ``n_scrambles`` times by
    :func:`~sklearn_cnnenc.stimuli.phase_shift` with a uniformly random
    angle: all Fourier components on the neuron's preferred side turn by
    that angle, so local phase changes (edges become lines, light becomes
    dark) while local contrast energy and the amplitude spectrum stay
    exactly the same (a grating of the preferred orientation moves within
    its period). The index of neuron ``k`` is the correlation, over
    stimuli ``x`` and angles ``phi``, between its responses to the original
    and to the shifted stimulus:

    .. math::

        \\mathrm{PII}_k = \\mathrm{corr}_{x,\\varphi}\\big(r_k(x),\\, r_k(x_\\varphi)\\big)

    An energy-model complex cell, blind to phase, has PII near 1; a linear
    filter (a GLM's linear predictor) near 0, since the drive ``Re(A)``
    becomes ``Re(e^{i phi} A)``, uncorrelated with it over uniform angles;
    rectified simple cells lie in between (about 0.2 to 0.4: the shared
    contrast energy ``|A|``). An out-of-distribution test of mechanism (the
    reference chapter): a model that claims to work like an energy model
    must match the neuron's index. The transform is circular, so a model
    that weights the image border also sees the wrap-around there.

    Parameters
    ----------
    model : fitted estimator, or callable ``X -> responses``
    X : array-like of shape (n, height, width)
        Stimuli (e.g. held-out natural image patches); ``(n, 1, H, W)`` and
        flat rows with ``image_shape`` are accepted.
    n_scrambles : int, default=8
        Random phase shifts per stimulus.
    random_state : int, RandomState instance or None, default=None
    orientation : float or array-like of shape (n_neurons,), optional
        Direction of the phase shift for each neuron (its preferred
        orientation); default: found by :func:`preferred_grating`.
    image_shape : (int, int), optional
        Needed for flat ``X``.

    Returns
    -------
    result : Bunch
        ``index`` (n_neurons,), in [-1, 1] (NaN for a neuron whose
        predictions do not vary); ``orientation`` (n_neurons,), the
        directions used.

    Raises
    ------
    ValueError
        For a CNNEncoder fitted on time series (no spatial axes), or stimuli
        that are not grey-level images.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.inspection import phase_invariance_index
    >>> from sklearn_cnnenc.stimuli import gabor_patch, natural_image_patches
    >>> pair = gabor_patch(16, orientation=0.6, frequency=0.2, phase=[0, np.pi / 2]).X
    >>> def cells(X):  # a linear (simple-cell) drive and a complex cell (energy)
    ...     drive = X.reshape(len(X), -1) @ pair.reshape(2, -1).T
    ...     return np.column_stack([drive[:, 0], (drive**2).sum(axis=1)])
    >>> X = natural_image_patches(300, size=16, random_state=0)
    >>> result = phase_invariance_index(cells, X, random_state=0, orientation=0.6)
    >>> bool(abs(result.index[0]) < 0.1), bool(result.index[1] > 0.95)
    (True, True)
    """
    _check_image_model(model, "phase_invariance_index")
    n_scrambles = _positive_int(n_scrambles, "n_scrambles")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 4 and X.shape[1] == 1:
        X = X[:, 0]
    if X.ndim == 2:
        shape = _image_shape(model, image_shape, "phase_invariance_index")
        if X.shape[1] != shape[0] * shape[1]:
            raise ValueError(f"X has {X.shape[1]} features; image_shape {shape} needs "
                             f"{shape[0] * shape[1]}.")
        X = X.reshape(len(X), *shape)
    if X.ndim != 3 or len(X) < 2:
        raise ValueError(
            "phase_invariance_index needs at least 2 grey-level images (n, height, width); "
            f"got an array of shape {X.shape}."
        )
    rng = check_random_state(random_state)
    reference = predict(model, X)
    n, n_neurons = reference.shape
    if orientation is None:
        orientation = preferred_grating(model, image_shape=X.shape[1:]).orientation
    orientation = np.broadcast_to(np.asarray(orientation, dtype=np.float64), (n_neurons,))
    angles = rng.uniform(0, 2 * np.pi, size=(n_neurons, n, n_scrambles))
    index = np.empty(n_neurons)
    per_chunk = max(1, _MAX_VALUES_PER_CHUNK // (n * n_scrambles * X[0].size))
    for start in range(0, n_neurons, per_chunk):
        # neurons in chunks: each needs its own shifted stimuli (memory-bound)
        stop = min(start + per_chunk, n_neurons)
        count = stop - start
        shifted = phase_shift(
            X[None, :, None],
            angles[start:stop],
            orientation=orientation[start:stop, None, None],
        )
        responses = predict(model, shifted.reshape(-1, *X.shape[1:]))
        responses = responses.reshape(count, n, n_scrambles, n_neurons)
        own = responses[np.arange(count), :, :, np.arange(start, stop)].reshape(count, -1)
        original = np.repeat(reference[:, start:stop].T, n_scrambles, axis=1)
        own = own - own.mean(axis=1, keepdims=True)
        original = original - original.mean(axis=1, keepdims=True)
        scale = np.sqrt((own**2).sum(axis=1) * (original**2).sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            index[start:stop] = np.where(scale > 0, (own * original).sum(axis=1) / scale, np.nan)
    return Bunch(index=index, orientation=np.array(orientation))
