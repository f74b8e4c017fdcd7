"""Convolutional encoding model: a shared CNN core and a per-neuron readout."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from skorch.callbacks import Callback, EarlyStopping
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ._base import BaseEncoder, _selection_loss
from ._video import build_video_predictor
from .data import LazyArray, check_finite_by_chunks, is_lazy, open_array
from .distributions import get_family
from .nn import (
    ACTIVATIONS,
    READOUTS,
    BehaviorModulator,
    CausalCore1d,
    CNNPredictor,
    Core2d,
    EyeShifter,
    make_readout,
)
from .nn.cores import _is_int, resolve_architecture
from .nn.ensemble import PredictorEnsemble
from .nn.modulators import GAIN_LINKS
from .training import (
    DivergenceCheck,
    EnsembleValidationLoss,
    EpochProgress,
    LRScheduler,
    ValidationCorrelation,
    ValidationSplit,
)
from .utils._threads import limits_threads

__all__ = ["CNNEncoder", "InputLayout", "resolve_auto_defaults"]

# the learning rate drops by this factor when the monitored loss stalls for
# about a third of the early-stopping patience, so that a run gets two or
# three reductions before it stops
_LR_FACTOR = 0.3


def _response_scale(y, family: str, sample_weight=None) -> float:
    """Scale of the responses in the training loss (see ``resolve_auto_defaults``)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # complex, infinite or otherwise odd inputs are reported by the
            # validation that follows; here they only fall back to 1
            warnings.simplefilter("ignore")
            y = np.asarray(y, dtype=np.float64)
            # the family's mean bounds, not its name: a bounded mean
            # (probabilities) has scale 1, an unbounded one (Gaussian) its
            # standard deviation, a positive one (counts) its mean
            low, high = get_family(family).mean_bounds
            if np.isfinite(high) or y.size == 0:
                return 1.0
            y = y.reshape(len(y), -1)
            weights = None if sample_weight is None else np.asarray(sample_weight, float)
            mean = np.average(y, axis=0, weights=weights)
            if not np.isfinite(low):
                scale = np.sqrt(np.average((y - mean) ** 2, axis=0, weights=weights))
            else:
                scale = np.abs(mean)
            scale = float(np.mean(scale))
    except (TypeError, ValueError, KeyError, ZeroDivisionError):
        return 1.0
    return scale if np.isfinite(scale) and scale > 0 else 1.0


class _AverageEnsemble(Callback):
    """After training, reduce an ensemble to the average of its members."""

    @torch.no_grad()
    def on_train_end(self, net, X=None, y=None, **kwargs):
        module = net.module_
        if not isinstance(module.predictor, PredictorEnsemble) or module.predictor.averaged:
            return
        module.predictor.average()
        if module.raw_dispersion is not None:
            raw = module.raw_dispersion.detach().reshape(module.n_restarts, -1).mean(dim=0)
            module.raw_dispersion = torch.nn.Parameter(raw.clone())
        module.n_restarts = 1


@dataclass(frozen=True)
class InputLayout:
    """How a fitted :class:`CNNEncoder` reads one sample (its ``input_layout_``).

    Computed once per fit, when ``fit`` validates ``X`` (as scikit-learn
    records ``n_features_in_``), from the shape of ``X`` and the
    ``input_type`` and ``input_shape`` parameters. It is the single
    description of the inputs that every later step reads: the core and
    readout that are built, the ``"auto"`` settings, the validation split,
    and the validation of ``X`` in ``predict``. A new ``fit`` computes it
    again, so a refit on samples of another shape gets a new layout.

    Attributes
    ----------
    input_type : {"image", "time_series", "lagged", "video"}
        How a sample is read (``input_type="auto"`` resolved).
    input_shape : tuple of int
        One sample as the model's module takes it: ``(C, H, W)``, ``(C,
        T)``, ``(n_lags, C)`` or ``(T, C, H, W)``; the fitted model's
        ``input_shape_`` and ``sample_shape_``.
    given_shape : tuple of int
        One sample as ``fit`` received it: ``X.shape[1:]``, e.g. ``(H, W)``;
        for a flat ``X``, ``input_shape`` or, without it, ``(n_features,)``.

    Examples
    --------
    >>> from sklearn_cnnenc.cnn import InputLayout
    >>> layout = InputLayout("image", (1, 20, 20), (20, 20))
    >>> layout.accepts((20, 20)), layout.accepts((1, 20, 20)), layout.accepts((20, 21))
    (True, True, False)
    """

    input_type: str
    input_shape: tuple
    given_shape: tuple

    def accepts(self, sample_shape: tuple) -> bool:
        """Whether samples of shape ``sample_shape`` (not flat) can be read with this layout.

        Parameters
        ----------
        sample_shape : tuple of int
            ``X.shape[1:]`` of a multi-dimensional ``X``.

        Returns
        -------
        accepted : bool
            True for the shape given to ``fit``, the module's shape, and a
            single-channel image or movie without its channel axis.

        Examples
        --------
        >>> from sklearn_cnnenc.cnn import InputLayout
        >>> InputLayout("video", (8, 1, 12, 12), (8, 12, 12)).accepts((8, 1, 12, 12))
        True
        """
        sample_shape = tuple(sample_shape)
        if sample_shape in (self.input_shape, self.given_shape):
            return True
        if self.input_type == "image" and len(sample_shape) == 2:
            return (1, *sample_shape) == self.input_shape
        if self.input_type == "video" and len(sample_shape) == 3:
            return (sample_shape[0], 1, *sample_shape[1:]) == self.input_shape
        return False


class CNNEncoder(BaseEncoder):
    """Convolutional encoding model of a neural population (system identification).

    A *core* of ``n_layers`` convolutional blocks (convolution, BatchNorm,
    nonlinearity, optional pooling), shared by all neurons, turns the
    stimulus into feature maps; a *readout* maps them to one linear predictor
    per neuron, and an inverse link gives the expected response (Klindt et
    al. 2017; Lurz et al. 2021):

    .. math::

        E[y_k \\mid x] = g^{-1}\\big(\\mathrm{readout}_k(\\mathrm{core}(x)) + b_k\\big)

    All parameters minimise, by Adam on mini-batches,

    .. math::

        \\sum_k \\frac{1}{n} \\sum_i \\mathrm{NLL}(y_{ik} \\mid x_i)
        + \\gamma_\\mathrm{input} \\frac{\\|\\Delta W_1\\|^2}{\\|W_1\\|^2}
        + \\gamma_\\mathrm{hidden} \\sum_{l > 1} \\sum_o
          \\frac{\\sum_c \\|W_{l,oc}\\|}{\\|W_{l,o}\\|}
        + \\gamma_\\mathrm{readout} \\|w_\\mathrm{readout}\\|_1
        + \\gamma_\\mathrm{activity} \\sum_l \\overline{|a_l|}

    (Laplacian smoothness of the first-layer filters, group sparsity of the
    hidden filters over input channels, L1 on the readout weights, L1 on the
    activations ``a_l`` of every layer) with ``Adam(lr, weight_decay)``;
    training stops when the held-out log-likelihood of a validation split
    stops improving, and the best weights are restored.

    **Inputs.** Images ``(n, H, W)`` or ``(n, C, H, W)``; time series
    ``(n, C, T)`` (set ``input_type="time_series"``); or a flat 2-D array
    with ``input_shape`` (so the model works behind scikit-learn
    transformers), reshaped in C order to ``(n, *input_shape)``. A flat array
    without ``input_shape`` is a one-channel 1-D signal ``(n, 1, n_features)``.

    **Time series.** The core is causal: its output at a bin depends on that
    bin and earlier ones only. Each sample is a window of the stimulus and
    its response is the response in the *last* bin of that window: ``X[i] =
    s[:, t_i - T + 1 : t_i + 1]`` and ``y[i] = counts[t_i]``. The default
    readout, ``"last"``, reads the core's features at that bin, so only the
    last ``receptive_field_`` bins of a window matter (longer windows are
    cropped before the core runs, shorter ones are an error). For a
    recording ``s`` of shape ``(C, n_bins)``, ``np.moveaxis(
    sliding_window_view(s, T, axis=1), 1, 0)`` gives the ``n_bins - T + 1``
    windows (the i-th ending at bin ``i + T - 1``) as a view; validation
    then stores them once as float32. A blocked validation split (the
    default for time series) keeps neighbouring, overlapping windows on
    one side.

    **Lagged designs.** The library has one lag order: a lagged design is
    lag-major with lag 0 (the current bin) first, as
    :class:`~sklearn_cnnenc.preprocessing.TimeLagger` writes it and as
    :class:`~sklearn_cnnenc.PoissonGLM`'s ``coef_`` and
    :class:`~sklearn_cnnenc.LNModel` (``input_shape=(n_lags, C)``) read it.
    With ``input_type="lagged"`` (and ``input_shape=(n_lags, C)`` for
    several signals) the CNN takes the same rows: the model reverses and
    transposes each row into the causal window internally, so
    ``make_pipeline(TimeLagger(n_lags=T), CNNEncoder(input_type="lagged"))``
    works, one design serves every model of a comparison, and every
    input-space inspection (gradients, impulse responses) of the fitted CNN
    reads lag 0 first like the GLM's filter. ``input_shape_`` is then
    ``(n_lags, C)``.

    **Movies.** With ``input_type="video"``, X is ``(n, T, H, W)`` or ``(n,
    T, C, H, W)``: each sample a window of ``T`` frames (frames first, then
    channels) and its response the response at the *last* frame. The core
    is a :class:`~sklearn_cnnenc.nn.CausalCore3d`: per layer a spatial
    ``k x k`` convolution then a causal temporal convolution of
    ``temporal_kernel_size`` frames (neuralpredictors' Factorized3dCore);
    an image readout reads its feature maps at the last frame. Only the
    last ``receptive_field_[0]`` frames of a window matter. ``dilation``,
    ``stride``, ``pooling`` and ``weight_sharing`` keep their defaults.
    The validation split is blocked by default (overlapping windows).

    **Defaults that follow the data.** Settings left at ``"auto"`` are
    resolved in ``fit`` from the shapes of the data alone (deterministic,
    see :func:`resolve_auto_defaults`; only the depth below 1,500 images is
    chosen by the validation part, as below) and stored as fitted attributes
    (``n_layers_``, ``channels_``, ``kernel_size_``, ``max_epochs_``,
    ``patience_``, ``validation_fraction_``, ``n_ensemble_``,
    ``gamma_readout_``). With ``n`` samples, ``K`` neurons, images of side
    ``S`` and ``n_batches`` training batches per epoch:

    * ``n_layers``: 3 from 1,500 images on; below, ``fit`` trains one and
      two layers (same seeds, same validation split; up to twice the time) and
      keeps the better held-out score (``depth_scores_``; two on a tie;
      a warm start continues the depth kept), because cells that one layer
      represents and cells that need two have data of the same shape;
      time series: 2;
    * ``kernel_size``: ``S / 3`` rounded down to an odd number within
      ``[3, 13]`` in the first layer, then 5 (3 below 16 px); time series
      ``(9, 5)``;
    * ``channels``: ``8 * floor(sqrt(K))`` within ``[16, 64]``, for images at
      most ``sqrt(n_train * K) / k`` rounded down to a multiple of 8 (at
      least 8), where ``k`` is the hidden kernel size: a hidden layer's
      ``C * C * k * k`` weights stay below the number of training responses;
    * ``validation_fraction``: ``200 / n`` within ``[0.1, 0.2]``;
    * ``patience``: ``ceil(1000 / n_batches)`` within ``[8, 50]`` epochs, and
      ``max_epochs``: ``ceil(8000 / n_batches)`` within ``[40, 400]`` (a
      budget in optimizer steps, so small data sets train for more epochs);
    * ``n_ensemble``: 5 averaged fits below 2,000 samples, else 1;
    * ``gamma_readout``: ``scale * min(10 / n_train, 0.02)`` (an L1 prior
      on the readout of fixed weight in the summed log-likelihood, capped
      below 500 training samples; ``scale`` is the mean response for
      counts, its standard deviation for the Gaussian).

    These rules were set on simulated populations of varied size, image
    size, cell type and noise (``benchmarks/bench_defaults.py``), not on one
    data set. Why small data needed them: a single CNN fitted to 700
    samples overfits early (its validation loss is best after a few
    epochs, before the shared filter is found), and a Laplacian penalty on
    the first layer suppresses any filter that is not smooth. Averaging
    five fits, a readout prior and a core no wider than the data support
    remove most of that variance, and the smoothness penalty is off by
    default. With the former prior (``5 * scale / n_train``) and 24
    channels the training loss kept falling while the validation loss was
    best at epoch 5 (the readout masks and the 24 x 24 hidden filters fit
    noise): r = 0.59 against 0.63 for a pixel GLM; twice the prior and 16
    channels give 0.68. A much stronger prior (from about ``0.035 *
    scale``) zeroes a one-layer model's readout in the first epochs, hence
    the cap. For the same reason an ensemble stops on the held-out
    log-likelihood of its average, not of its members: each member's is
    best within the first epochs, the average's later.

    Parameters
    ----------
    n_layers : int or "auto", default="auto"
        Number of convolutional blocks in the core.
    channels : int, list of int or "auto", default="auto"
        Feature maps per layer. A list gives each layer's value in turn and
        its last entry repeats for deeper layers (entries beyond
        ``n_layers`` are unused); the same holds for ``kernel_size``,
        ``dilation`` and ``stride``.
    kernel_size : int, list of int or "auto", default="auto"
        Kernel size per layer (square for images, along time for time
        series); ``"auto"`` sizes the first layer to the image (above).
    dilation : int, list of int or "exponential", default=1
        ``"exponential"`` is ``2^(l-1)`` in layer ``l`` (temporal
        convolutional networks: the receptive field doubles per layer).
    stride : int or list of int, default=1
    pooling : None, "max", "avg" or (kind, size), default=None
        Pooling after every block (size 2 for a bare kind).
    padding : "valid", "same", int or list of these, default=("valid", "same")
        Per layer as for ``channels``. The default shrinks the maps in the
        first layer only and keeps their size in hidden layers, so deeper
        cores stay valid on small images (the convention of Sinz-lab cores).
        For time series, padding is on the left only (zeros before the
        first bin), keeping the core causal.
    batch_norm : bool, default=True
        BatchNorm (with learned scale and shift) after every convolution.
    activation : {"elu", "relu", "softplus", "identity"}, default="elu"
    readout : {"auto", "factorized", "gaussian", "pooled", "dense", "last"}, default="auto"
        ``"factorized"``: spatial mask x feature weights per neuron (Klindt
        et al. 2017); ``"gaussian"``: features at a learned position (Lurz
        et al. 2021); ``"pooled"``: global average pooling then linear
        (translation invariant); ``"dense"``: linear in all features;
        ``"last"``: the features of the last time bin (time series only).
        ``"auto"`` is ``"factorized"`` for images and ``"last"`` for time
        series.
    link : {"auto", "softplus", "exp", "elu1", "identity"}, default="auto"
        Inverse link into the family; ``"auto"`` is ``"softplus"`` for the
        families whose canonical link is ``"exp"`` (counts, gamma: softplus
        grows linearly, which keeps SGD stable where ``"exp"`` can overshoot)
        and the family's canonical link otherwise.
    family : str or Family, default="poisson"
        A registered family (:mod:`sklearn_cnnenc.distributions`):
        ``"poisson"`` for spike counts; ``"gaussian"`` for calcium
        responses; ``"negative_binomial"``, ``"bernoulli"``, ``"gamma"``.
    input_shape : tuple of int, optional
        Shape of one sample when ``X`` is flat, e.g. ``(H, W)``, ``(C, H,
        W)`` or, with ``input_type="time_series"``, ``(C, T)``; with
        ``input_type="lagged"``, ``(n_lags, C)`` (default ``(n_features,)``:
        one lagged signal).
    input_type : {"auto", "image", "time_series", "lagged", "video"}, default="auto"
        How to read a sample of shape ``(A, B)``: ``"auto"`` reads 2-D and
        3-D sample shapes as images and 1-D ones as one-channel time series;
        ``"lagged"`` reads ``(n_lags,)`` or ``(n_lags, C)`` as a row of a
        :class:`~sklearn_cnnenc.preprocessing.TimeLagger` design (lag 0
        first, see **Lagged designs**); ``"video"`` reads ``(T, H, W)`` or
        ``(T, C, H, W)`` as movie windows.
    temporal_kernel_size : int or list of int, default=5
        Temporal kernel per layer, in frames (``input_type="video"`` only).
    weight_sharing : bool, default=True
        False replaces every convolution by a locally connected layer (same
        receptive fields, one filter bank per position).
    gamma_input : float, default=0.0
        Laplacian smoothness of first-layer filters (scale-free: the squared
        Laplacian over the squared norm of the filters). Off by default: it
        is not scaled to the likelihood (whose size depends on the number of
        neurons and, for the Gaussian, on the response units), and at 0.01
        already keeps a one-layer CNN from learning a non-smooth filter from
        700 samples; set it when the filters are known to be smooth.
    gamma_hidden : float, default=0.0
        Group sparsity of hidden filters.
    gamma_readout : float or "auto", default="auto"
        L1 penalty on readout weights; ``"auto"`` as above (it fades as the
        data grow).
    gamma_activity : float, default=0.0
        L1 penalty on the core's activations (sparse coding).
    lr : float, default=3e-3
        Adam learning rate.
    weight_decay : float, default=0.0
        Adam's L2 weight decay.
    batch_size : int, default=64
    max_epochs : int or "auto", default="auto"
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the samples, stop when their
        ``early_stopping_metric`` has not improved for ``patience`` epochs
        and restore the best weights. Without it, all samples train for
        ``max_epochs``.
    early_stopping_metric : {"log_likelihood", "correlation"}, default="log_likelihood"
        What ranks the epochs (and the ``n_init`` fits): the held-out
        log-likelihood of the prediction the fitted model makes (of an
        ensemble, of its members' average, see
        :class:`~sklearn_cnnenc.training.EnsembleValidationLoss`: the average
        overfits later than its members), or the mean over neurons of the
        held-out correlation between the predicted and the recorded
        responses (:class:`~sklearn_cnnenc.training.ValidationCorrelation`),
        for models compared by correlation. The correlation ignores the
        scale of the prediction: on the recorded auditory neuron of
        ``benchmarks/bench_defaults.py`` it cost 0.034 and 0.012 held-out
        bits/spike, while on a few hundred images it raised the correlation
        with the true rates (see the README's defaults section). The
        learning rate follows the members' held-out log-likelihood either
        way.
    validation_fraction : float or "auto", default="auto"
    validation_split : {"auto", "blocked", "random"}, default="auto"
        ``"blocked"`` holds out the last samples (no leakage between
        neighbouring time bins), ``"random"`` a random subset; ``"auto"`` is
        ``"blocked"`` for time series and movies and ``"random"`` for images (trials of
        independent images; use ``"blocked"`` when slow drifts matter).
    patience : int or "auto", default="auto"
        Epochs without improvement before stopping; the learning rate drops
        (x0.3) after ``max(1, patience // 3)`` such epochs.
    n_init : int, default=1
        Trainings from different random initialisations; the one with the
        best validation score (``early_stopping_metric``; the final training
        loss without early stopping) is kept. With ``n_init > 1``,
        ``n_ensemble="auto"`` is 1 (an explicit ``n_ensemble > 1`` is then an
        error).
    n_ensemble : int or "auto", default="auto"
        Independent models (different random starts) trained side by side
        on the same data and split, as one batched problem, whose linear
        predictors are averaged into the prediction (see
        :class:`~sklearn_cnnenc.nn.ensemble.PredictorEnsemble`); ``core_``
        and ``readout_module_`` are then the first member's. Not for
        ``input_type="video"``.
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    device : str, default="auto"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when
        available). A model fitted on a GPU predicts on the CPU after
        unpickling on a machine without one.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and the validation split; CPU fits
        are reproducible bit for bit.
    verbose : int, default=0
        ``1`` prints skorch's table of epochs.
    missing_responses : {"raise", "mask"}, default="raise"
        What a NaN in ``y`` means. ``"raise"``: an error. ``"mask"``: a
        response that was not recorded (another session's neuron): NaN
        entries drop out of the training likelihood (each neuron's loss is
        its mean negative log-likelihood over its own observed entries), the
        validation loss, the starting intercepts, ``score`` (mean over
        observed entries) and ``log_likelihood`` (NaN there); a neuron
        never observed is a ValueError. Memory: the mask is derived from the
        NaNs per batch (1 byte per entry, transient); ``y`` is not copied to
        float64: 7 sessions x 6,000 trials x 8,000 neurons in float32 take
        1.3 GB, 1.7 GB with the mask. One CNN on a NaN-padded matrix of
        several sessions is the shared-core, per-neuron-readout model of
        Sensorium / neuralpredictors: the core learns from every session,
        each readout from its own neuron's session.
    behavior_modulator : {"gain", "gain_shift"}, default="gain"
        Used when ``fit`` gets ``behavior=`` (n_samples, n_covariates): an MLP
        maps a sample's behaviour to a positive per-neuron gain ``exp(g)``
        that multiplies the predicted rate (the Sensorium baseline);
        ``"gain_shift"`` also adds a per-neuron shift to the linear predictor
        before the gain. It starts at gain one. Needs the ``exp``,
        ``softplus``, ``elu1`` or ``identity`` link.
    modulator_hidden_units : int, default=16
        Hidden units of the behaviour MLP (0: a linear map per neuron).
    shifter_hidden_units : int, default=8
        Hidden units of the eye-position shifter (Sinz et al. 2018), used
        when ``fit`` gets ``eye_position=`` (n_samples, 2): it shifts every
        read-out position of a sample; needs ``readout="gaussian"``.

    Attributes
    ----------
    input_layout_ : InputLayout
        How a sample is read: its type, its shape as the model takes it and
        its shape as ``fit`` received it. Recorded when ``fit`` validates
        ``X`` and read by every later step of the fit and by ``predict``.
    input_shape_ : tuple of int
        Shape of one sample as the model takes it, ``(C, H, W)``, ``(C, T)``,
        ``(n_lags, C)`` for lagged designs or ``(T, C, H, W)`` for movies
        (``input_layout_.input_shape``).
    input_type_ : {"image", "time_series", "lagged", "video"}
        ``input_layout_.input_type``.
    readout_type_ : str
        The readout used (``"auto"`` resolved).
    n_layers_, channels_, kernel_size_ : int, list of int, list of int
        The architecture used (``"auto"`` resolved; per layer).
    max_epochs_, patience_, validation_fraction_, n_ensemble_, gamma_readout_
        The training settings used (``"auto"`` resolved).
    depth_scores_ : dict of int to float
        Only where ``n_layers="auto"`` compared depths (images, fewer than
        1,500 samples, early stopping on): each depth's best validation score
        as a loss (lower is better; a correlation is negated). ``n_layers_``
        is the depth kept.
    receptive_field_ : tuple of int
        Input extent seen by one core output unit: ``(h, w)``, ``(T,)`` or,
        for movies, ``(frames, h, w)``.
    n_parameters_ : int
        Number of trained parameters.
    core_ : Core2d or CausalCore1d
        The fitted core (a torch module).
    readout_module_ : torch.nn.Module
        The fitted readout.
    mean_response_ : ndarray of shape (n_neurons,)
    dispersion_ : ndarray of shape (n_neurons,) or (n_neurons, 2), or None
    n_iter_ : int
        Epochs trained (of the kept restart).
    n_features_in_ : int
        Values per sample (``prod(input_shape_)``).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.
    n_outputs_ : int
    family_ : Family
    link_ : Link
    net_ : EncoderNet
    history_ : skorch.History

    See Also
    --------
    PoissonGLM : generalised linear model.
    sklearn_cnnenc.nn.Core2d, sklearn_cnnenc.nn.CausalCore1d : the cores.

    References
    ----------
    .. [1] Klindt, D. A. et al. (2017). Neural system identification for large
       populations separating "what" and "where". NeurIPS.
    .. [2] Lurz, K.-K. et al. (2021). Generalization in data-driven models of
       primary visual cortex. ICLR.

    Examples
    --------
    >>> from sklearn_cnnenc import CNNEncoder
    >>> from sklearn_cnnenc.datasets import make_v1_population
    >>> data = make_v1_population(n_samples=300, n_simple=2, n_complex=2, random_state=0)
    >>> model = CNNEncoder(channels=4, max_epochs=3, n_ensemble=1, device="cpu", random_state=0)
    >>> model = model.fit(data.X, data.y)
    >>> model.predict(data.X).shape
    (300, 4)
    >>> model.n_layers_, model.kernel_size_, model.receptive_field_
    (2, [5, 5], (9, 9))
    """

    # compare_models passes behavior= to it
    _takes_behavior = True

    _parameter_constraints: dict = {
        **BaseEncoder._parameter_constraints,
        "n_layers": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "channels": [Interval(Integral, 1, None, closed="left"), list, tuple, StrOptions({"auto"})],
        "kernel_size": [
            Interval(Integral, 1, None, closed="left"), list, tuple, StrOptions({"auto"})
        ],
        "dilation": [
            Interval(Integral, 1, None, closed="left"),
            list,
            tuple,
            StrOptions({"exponential"}),
        ],
        "stride": [Interval(Integral, 1, None, closed="left"), list, tuple],
        "pooling": [None, StrOptions({"max", "avg"}), list, tuple],
        "padding": [
            StrOptions({"valid", "same"}),
            Interval(Integral, 0, None, closed="left"),
            list,
            tuple,
        ],
        "batch_norm": ["boolean"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "readout": [StrOptions({"auto", *READOUTS})],
        "input_shape": [None, list, tuple],
        "input_type": [StrOptions({"auto", "image", "time_series", "lagged", "video"})],
        "temporal_kernel_size": [Interval(Integral, 1, None, closed="left"), list, tuple],
        "weight_sharing": ["boolean"],
        "gamma_input": [Interval(Real, 0.0, None, closed="left")],
        "gamma_hidden": [Interval(Real, 0.0, None, closed="left")],
        "gamma_readout": [Interval(Real, 0.0, None, closed="left"), StrOptions({"auto"})],
        "gamma_activity": [Interval(Real, 0.0, None, closed="left")],
        "lr": [Interval(Real, 0.0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0.0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "early_stopping": ["boolean"],
        "early_stopping_metric": [StrOptions({"log_likelihood", "correlation"})],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="neither"), StrOptions({"auto"})],
        "validation_split": [StrOptions({"auto", "blocked", "random"})],
        "patience": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "behavior_modulator": [StrOptions({"gain", "gain_shift"})],
        "modulator_hidden_units": [Interval(Integral, 0, None, closed="left")],
        "shifter_hidden_units": [Interval(Integral, 0, None, closed="left")],
        "n_ensemble": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    }

    def __init__(
        self,
        n_layers="auto",
        channels="auto",
        kernel_size="auto",
        dilation=1,
        stride=1,
        pooling=None,
        padding=("valid", "same"),
        batch_norm: bool = True,
        activation: str = "elu",
        readout: str = "auto",
        *,
        link: str = "auto",
        family: str = "poisson",
        input_shape=None,
        input_type: str = "auto",
        temporal_kernel_size=5,
        weight_sharing: bool = True,
        gamma_input: float = 0.0,
        gamma_hidden: float = 0.0,
        gamma_readout="auto",
        gamma_activity: float = 0.0,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        max_epochs="auto",
        early_stopping: bool = True,
        early_stopping_metric: str = "log_likelihood",
        validation_fraction="auto",
        validation_split: str = "auto",
        patience="auto",
        n_init: int = 1,
        n_ensemble="auto",
        warm_start: bool = False,
        device: str = "auto",
        random_state=None,
        verbose: int = 0,
        missing_responses: str = "raise",
        behavior_modulator: str = "gain",
        modulator_hidden_units: int = 16,
        shifter_hidden_units: int = 8,
    ) -> None:
        self.n_layers = n_layers
        self.channels = channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.stride = stride
        self.pooling = pooling
        self.padding = padding
        self.batch_norm = batch_norm
        self.activation = activation
        self.readout = readout
        self.link = link
        self.family = family
        self.input_shape = input_shape
        self.input_type = input_type
        self.temporal_kernel_size = temporal_kernel_size
        self.weight_sharing = weight_sharing
        self.gamma_input = gamma_input
        self.gamma_hidden = gamma_hidden
        self.gamma_readout = gamma_readout
        self.gamma_activity = gamma_activity
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.early_stopping_metric = early_stopping_metric
        self.validation_fraction = validation_fraction
        self.validation_split = validation_split
        self.patience = patience
        self.n_init = n_init
        self.n_ensemble = n_ensemble
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.missing_responses = missing_responses
        self.behavior_modulator = behavior_modulator
        self.modulator_hidden_units = modulator_hidden_units
        self.shifter_hidden_units = shifter_hidden_units

    # ------------------------------------------------------------ fitting
    @limits_threads
    def fit(self, X, y, sample_weight=None, offset=None, behavior=None, eye_position=None):
        """Fit the model by maximum likelihood (plus penalties).

        ``"auto"`` settings are first resolved from the shapes of ``X`` and
        ``y`` (see :func:`resolve_auto_defaults`) and stored as fitted
        attributes (``n_layers_``, ``channels_`` ...). With
        ``n_layers="auto"`` and fewer than 1,500 images, one and two layers
        are both fitted and the better on the validation part is kept
        (``depth_scores_``).

        Parameters
        ----------
        X : array-like
            Images ``(n, H, W)`` or ``(n, C, H, W)``, time series ``(n, C,
            T)``, or flat ``(n, n_features)`` with ``input_shape``.
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        sample_weight : array-like of shape (n_samples,), optional
        offset : array-like of shape (n_samples,) or (n_samples, n_neurons), optional
        behavior : array-like of shape (n_samples, n_covariates), optional
            Behavioural covariates that modulate the rate (see ``behavior_modulator``).
        eye_position : array-like of shape (n_samples, 2), optional
            Eye position that shifts a Gaussian readout.

        Returns
        -------
        self : object
        """
        # the number of neurons is read before the base class validates y
        # (a malformed y is reported there); X's layout is known once
        # _validate_X has run, where the settings are resolved
        try:
            shape = np.asarray(y).shape if y is not None else ()
        except (TypeError, ValueError):
            shape = ()
        self._n_neurons_for_auto = int(shape[1]) if len(shape) == 2 else 1
        self._response_scale = _response_scale(y, self.family, sample_weight)
        self._weight_total = None
        if sample_weight is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # the loss normalises weights to mean 1: the prior counts the
                    # samples that take part (positive weight)
                    total = np.sum(np.asarray(sample_weight, dtype=np.float64) > 0)
                self._weight_total = float(total)
            except (TypeError, ValueError):
                pass  # reported by the validation that follows
        self._auto = None
        fit_params = dict(
            sample_weight=sample_weight, offset=offset, behavior=behavior,
            eye_position=eye_position,
        )
        if self._compares_depths(X):
            return self._fit_better_depth(X, y, fit_params)
        self.__dict__.pop("depth_scores_", None)
        return super().fit(X, y, **fit_params)

    def _compares_depths(self, X) -> bool:
        """Whether ``n_layers="auto"`` fits one and two layers and keeps the better.

        For images of fewer than ``_DEEP_MIN_SAMPLES`` samples, with early
        stopping (the validation part judges) and not continuing a fit: the
        data's shape cannot tell cells that one layer represents from cells
        that need two (see :func:`resolve_auto_defaults`). Decided from the
        shape of ``X`` alone; malformed input is reported by the fit itself.
        """
        if self.n_layers != "auto" or not self.early_stopping or self._continues_fit():
            return False
        try:
            shape = tuple(X.shape) if hasattr(X, "shape") else np.shape(X)
        except (TypeError, ValueError):
            return False
        if len(shape) < 2 or not 0 < shape[0] < _DEEP_MIN_SAMPLES:
            return False
        sample_shape = shape[1:]
        if len(shape) == 2 and self.input_shape is not None:
            sample_shape = tuple(self.input_shape)
        if self.input_type == "auto":
            return len(sample_shape) in (2, 3)
        return self.input_type == "image"

    def _fit_better_depth(self, X, y, fit_params: dict):
        """Fit one and two layers on the same split and seeds; keep the better (two on a tie)."""
        self._validate_params()  # (random_state is read before the clones validate it)
        random_state = self.random_state
        if not isinstance(random_state, Integral):
            # one integer for both fits: the same validation split judges them
            random_state = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        fits, scores = {}, {}
        for depth in (2, 1):
            fits[depth] = clone(self).set_params(n_layers=depth, random_state=random_state)
            fits[depth].fit(X, y, **fit_params)
            scores[depth] = _selection_loss(
                fits[depth].history_, *fits[depth]._selection_monitor()
            )
        kept = fits[1] if scores[1] < scores[2] else fits[2]
        params = self.get_params(deep=False)
        self.__dict__.update(kept.__dict__)
        self.set_params(**params)
        self.depth_scores_ = scores
        return self

    def _n_ensemble_setting(self):
        """``n_ensemble`` as the rules see it.

        Best-of-``n_init`` replaces the ensemble, and so do covariates
        (``behavior=``, ``eye_position=``: one modulator and shifter per model).
        """
        covariates = [name for name, used in (
            ("behavior", getattr(self, "n_behavior_covariates_", 0) > 0),
            ("eye_position", getattr(self, "uses_eye_position_", False)),
        ) if used]
        if self.n_init == 1 and not covariates:
            return self.n_ensemble
        if self.n_ensemble == "auto":
            return 1
        if self.n_ensemble > 1:
            why = (
                f"n_init={self.n_init} keeps the best of several fits"
                if self.n_init > 1
                else f"{' and '.join(covariates)} modulate(s) one model"
            )
            raise ValueError(
                f"n_ensemble={self.n_ensemble} averages several fits, but {why}: "
                "set n_ensemble=1."
            )
        return self.n_ensemble

    def _n_layers_setting(self):
        """``n_layers`` as the rules see it: a continued fit keeps the depth it had."""
        if self.n_layers == "auto" and self._continues_fit():
            return self.n_layers_
        return self.n_layers

    def _resolved(self) -> dict:
        """The settings with ``"auto"`` resolved for the data being fitted."""
        if getattr(self, "_auto", None) is None:
            layout = self.input_layout_
            self._auto = resolve_auto_defaults(
                input_type=layout.input_type,
                input_shape=layout.input_shape,
                n_samples=self._n_samples_for_auto,
                n_neurons=getattr(self, "_n_neurons_for_auto", 1),
                batch_size=self.batch_size,
                early_stopping=self.early_stopping,
                n_layers=self._n_layers_setting(),
                channels=self.channels,
                kernel_size=self.kernel_size,
                max_epochs=self.max_epochs,
                patience=self.patience,
                validation_fraction=self.validation_fraction,
                n_ensemble=self._n_ensemble_setting(),
                gamma_readout=self.gamma_readout,
                response_scale=getattr(self, "_response_scale", 1.0),
                sample_weight_sum=getattr(self, "_weight_total", None),
            )
        return self._auto

    # ------------------------------------------------------------ inputs
    def _torch_dtype(self, X: np.ndarray) -> torch.dtype:
        # convolutions are several times faster in float32, and the data then
        # take half the memory; float64 buys nothing for SGD
        return torch.float32

    def _resolve_layout(self, sample_shape: tuple, flat: bool) -> tuple[str, tuple]:
        """``("image", (C, H, W))`` or ``("time_series", (C, T))`` for one sample."""
        n_dims = len(sample_shape)
        kind = self.input_type
        if kind == "auto":
            kind = "time_series" if n_dims == 1 else "image"
        origin = "input_shape" if (flat and self.input_shape is not None) else "sample shape"
        if kind == "video":
            if n_dims == 3:
                return kind, (sample_shape[0], 1, *sample_shape[1:])
            if n_dims == 4:
                return kind, tuple(sample_shape)
            raise ValueError(
                f"Movies need a {origin} (T, H, W) or (T, C, H, W); got "
                f"{tuple(sample_shape)}. Pass X of shape (n, T, H, W) or (n, T, C, H, W)."
            )
        if kind == "image":
            if n_dims == 2:
                return kind, (1, *sample_shape)
            if n_dims == 3:
                return kind, tuple(sample_shape)
            raise ValueError(
                f"Images need a {origin} (H, W) or (C, H, W); got {tuple(sample_shape)}. "
                "Pass X of shape (n, H, W) or (n, C, H, W), or a flat X with input_shape."
            )
        if kind == "lagged":
            if n_dims in (1, 2):
                return kind, (*sample_shape, 1)[:2]
            raise ValueError(
                f"Lagged designs need a {origin} (n_lags,) or (n_lags, C); got "
                f"{tuple(sample_shape)}. Pass TimeLagger's output with "
                "input_shape=(n_lags, n_columns)."
            )
        if n_dims == 1:
            return kind, (1, *sample_shape)
        if n_dims == 2:
            return kind, tuple(sample_shape)
        raise ValueError(
            f"Time series need a {origin} (T,) or (C, T); got {tuple(sample_shape)}. "
            "Pass X of shape (n, C, T), or a flat X with input_shape=(C, T)."
        )

    def _validate_lazy_X(self, X, *, reset: bool) -> LazyArray:
        """An array on disk as a float32 :class:`LazyArray`, checked chunk by chunk."""
        X = open_array(X, dtype=np.float32)
        if X.ndim < 2 or len(X) < 1:
            raise ValueError(
                f"X must hold at least one sample and be at least 2-D; got shape {X.shape}."
            )
        n_values = int(np.prod(X.shape[1:]))
        # feature count and names only: the values are checked by chunks
        validate_data(self, np.empty((1, n_values), np.float32), reset=reset,
                      skip_check_array=True)
        check_finite_by_chunks(X)
        return X

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        try:
            n_dims = np.ndim(X)
        except Exception:  # sparse matrices and other exotic inputs
            n_dims = 2
        if is_lazy(X):
            # stimuli on disk (memmap, HDF5, zarr) are streamed, never loaded
            X = self._validate_lazy_X(X, reset=reset)
            flat = X.ndim == 2
        elif n_dims > 2:
            X = check_array(X, allow_nd=True, dtype=np.float32, input_name="X")
            # n_features_in_ counts the values of one sample, so that a flat
            # view of the same data is accepted as well
            validate_data(self, X.reshape(len(X), -1), reset=reset, skip_check_array=True)
            flat = False
        else:
            X = validate_data(self, X, reset=reset, dtype=np.float32)
            flat = True
        n_samples = len(X)

        if reset:
            if flat:
                sample_shape = (
                    (X.shape[1],) if self.input_shape is None else self._checked_input_shape(X)
                )
            else:
                sample_shape = X.shape[1:]
                if self.input_shape is not None and tuple(self.input_shape) != sample_shape:
                    raise ValueError(
                        f"X has samples of shape {sample_shape} but input_shape="
                        f"{tuple(self.input_shape)}; pass a flat X or a matching input_shape."
                    )
            kind, shape = self._resolve_layout(tuple(sample_shape), flat)
            # the fitted description of the inputs (as validate_data records
            # n_features_in_): every later step of the fit and predict read it
            self.input_layout_ = InputLayout(kind, shape, tuple(sample_shape))
            self._n_samples_for_auto = n_samples
            self._auto = None
            return X.reshape(n_samples, *shape)

        layout = self.input_layout_
        if not flat and not layout.accepts(X.shape[1:]):
            raise ValueError(
                f"X has samples of shape {X.shape[1:]}, but {type(self).__name__} was "
                f"fitted on samples of shape {layout.given_shape}."
            )
        return X.reshape(n_samples, *layout.input_shape)

    def _checked_input_shape(self, X) -> tuple:
        shape = self.input_shape
        if not all(_is_int(s) and s >= 1 for s in shape) or not shape:
            raise ValueError(f"input_shape must be a tuple of positive ints; got {shape!r}.")
        if int(np.prod(shape)) != X.shape[1]:
            raise ValueError(
                f"input_shape={tuple(shape)} holds {int(np.prod(shape))} values per sample, "
                f"but X has {X.shape[1]} features."
            )
        return tuple(int(s) for s in shape)

    # ------------------------------------------------------ architecture
    def _readout_name(self, kind: str) -> str:
        if self.readout == "auto":
            return "last" if kind in ("time_series", "lagged") else "factorized"
        if self.readout == "last" and kind not in ("time_series", "lagged"):
            raise ValueError("readout='last' reads the last time bin: it needs time series.")
        return self.readout

    def _split(self, kind: str) -> ValidationSplit | None:
        if not self.early_stopping:
            return None
        method = self.validation_split
        if method == "auto":
            method = "blocked" if kind in ("time_series", "lagged", "video") else "random"
        return ValidationSplit(self._resolved()["validation_fraction"], method)

    def _check_covariates(self, behavior, eye_position) -> None:
        if eye_position is not None and self.readout != "gaussian":
            raise ValueError(
                "eye_position= shifts the read-out positions of a Gaussian readout: use "
                f"readout='gaussian' (got readout={self.readout!r})."
            )
        if behavior is not None:
            family = get_family(self.family)
            name = self._default_link(family) if self.link == "auto" else self.link
            if name not in GAIN_LINKS:
                raise ValueError(
                    f"behavior= multiplies the rate by a gain, which needs one of the links "
                    f"{list(GAIN_LINKS)}; got link={name!r}."
                )

    def _build_modulator(self, n_outputs: int, dtype):
        n_covariates = self.n_behavior_covariates_
        if not n_covariates:
            return None
        return BehaviorModulator(
            n_covariates,
            n_outputs,
            hidden_units=self.modulator_hidden_units,
            shift=self.behavior_modulator == "gain_shift",
            dtype=dtype,
        )

    def _build_predictor(self, X, y, dtype, n_copies: int = 1):
        layout = self.input_layout_
        kind, shape = layout.input_type, layout.input_shape
        auto = self._resolved()
        if kind == "video":
            return build_video_predictor(
                self, X, y, dtype, settings=auto, split=self._split(kind),
                readout=self._readout_name(kind),
            )
        # validated once here (naming the bad parameter); the core receives
        # the resolved per-layer lists
        architecture = resolve_architecture(
            auto["n_layers"],
            auto["channels"],
            auto["kernel_size"],
            self.dilation,
            self.stride,
            self.pooling,
            self.padding,
        )
        extent = architecture.pop("receptive_field")
        n_samples = len(X)
        split = self._split(kind)
        if split is not None:
            split.check(n_samples)
        n_train = n_samples - (0 if split is None else split.n_valid(n_samples))
        if self.batch_norm and n_train < 2:
            raise ValueError(
                f"BatchNorm needs at least 2 training samples; got {n_train} sample(s)."
            )
        readout = self._readout_name(kind)
        options = dict(
            **architecture,
            batch_norm=self.batch_norm,
            activation=self.activation,
            weight_sharing=self.weight_sharing,
            gamma_input=self.gamma_input,
            gamma_hidden=self.gamma_hidden,
            gamma_activity=self.gamma_activity,
            dtype=dtype,
        )
        crop = None
        lagged = kind == "lagged"
        if lagged or kind == "time_series":
            channels, length = shape[::-1] if lagged else shape
            if length < extent:
                what = (
                    f"X has {length} feature(s), read as a one-channel time series of "
                    f"{length} bin(s)"
                    if layout.given_shape == (length,)
                    else f"The time series have {length} bin(s)"
                )
                raise ValueError(
                    f"{what}, fewer than the receptive field of the core ({extent} bins); "
                    "pass longer windows or use smaller kernels, dilations or fewer layers."
                )
            if readout == "last":
                crop = extent
                length = extent

            def make_core():
                return CausalCore1d(channels, length, **options)
        else:

            def make_core():
                return Core2d(shape[0], shape[1:], **options)

        warm = self._continues_fit()
        n_members = getattr(self, "n_ensemble_", 1) if warm else n_copies
        predictors = []
        for _ in range(n_members):
            core = make_core()
            head = make_readout(
                readout, core.out_channels, core.output_size, y.shape[1],
                auto["gamma_readout"], dtype,
            )
            shifter = None
            if self.uses_eye_position_:
                shifter = EyeShifter(2, self.shifter_hidden_units, dtype=dtype)
            predictors.append(
                CNNPredictor(core, head, crop=crop, lagged=lagged, shifter=shifter)
            )
        if len(predictors) == 1:
            return predictors[0]
        ensemble = PredictorEnsemble(predictors)
        if warm:
            # continues the averaged ensemble of the previous fit
            ensemble.average()
        return ensemble

    def _continues_fit(self) -> bool:
        """Whether this fit continues the previous one (``warm_start``, as the base decides)."""
        return self.warm_start and hasattr(self, "net_")

    def _ensemble_size(self) -> int:
        """Members of the ensemble being fitted (the previous fit's when continuing it)."""
        if self._continues_fit():
            return getattr(self, "n_ensemble_", 1)
        return self._resolved()["n_ensemble"]

    def _net_params(self, n_samples: int) -> dict:
        kind = self.input_layout_.input_type
        auto = self._resolved()
        split = self._split(kind)
        monitor = "train_loss" if split is None else "valid_loss"
        callbacks = [
            (
                "lr_scheduler",
                LRScheduler(
                    ReduceLROnPlateau,
                    monitor=monitor,
                    patience=max(1, auto["patience"] // 3),
                    factor=_LR_FACTOR,
                ),
            ),
            ("divergence_check", DivergenceCheck()),
            ("progress", EpochProgress()),
        ]
        if split is not None:
            monitor, lower_is_better = self._selection_monitor()
            # recorded before early stopping reads them
            if monitor == "valid_corr":
                callbacks.append(("valid_corr", ValidationCorrelation()))
            elif monitor == "valid_ensemble_loss":
                callbacks.append(("valid_ensemble_loss", EnsembleValidationLoss()))
            callbacks.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor=monitor,
                        lower_is_better=lower_is_better,
                        patience=auto["patience"],
                        # a correlation may be near zero or negative: an
                        # absolute threshold (losses keep skorch's relative one)
                        threshold_mode="rel" if lower_is_better else "abs",
                        load_best=True,
                    ),
                )
            )
        if self._ensemble_size() > 1:
            # after early stopping has restored the best weights
            callbacks.append(("average_ensemble", _AverageEnsemble()))
        return {
            "optimizer": torch.optim.Adam,
            "lr": self.lr,
            "optimizer__weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            # evaluation needs no graph: larger batches are faster
            "iterator_valid__batch_size": max(self.batch_size, 256),
            "max_epochs": auto["max_epochs"],
            "train_split": split,
            "callbacks": callbacks,
        }

    def _selection_monitor(self) -> tuple[str, bool]:
        # what the fitted model predicts is judged: an ensemble by its average
        if self.early_stopping_metric == "correlation":
            return "valid_corr", False
        if self._ensemble_size() > 1:
            return "valid_ensemble_loss", True
        return "valid_loss", True

    def _n_restarts(self) -> int:
        # an ensemble's members are the (batched, averaged) restarts; n_init
        # best-of-n starts are sequential
        n_ensemble = self._resolved()["n_ensemble"]
        return n_ensemble if n_ensemble > 1 else self.n_init

    def _batches_restarts(self) -> bool:
        return self._resolved()["n_ensemble"] > 1

    def _combine_restarts(self) -> str:
        # the _AverageEnsemble callback has already averaged the members
        return "average" if self._resolved()["n_ensemble"] > 1 else "best"

    def _default_link(self, family) -> str:
        # exp of a deep network's output can overshoot: where the family's
        # canonical link is exp and it accepts softplus, use softplus
        if family.default_link == "exp" and "softplus" in family.links:
            return "softplus"
        return family.default_link

    def _set_fitted_attributes(self) -> None:
        layout = self.input_layout_
        self.input_type_ = layout.input_type
        self.input_shape_ = layout.input_shape
        self.readout_type_ = self._readout_name(layout.input_type)
        auto = self._resolved()
        self.n_layers_ = int(auto["n_layers"])
        self.channels_ = list(self.core_.channels)
        self.kernel_size_ = list(self.core_.kernel_size)
        self.max_epochs_ = int(auto["max_epochs"])
        self.patience_ = int(auto["patience"])
        self.validation_fraction_ = float(auto["validation_fraction"])
        predictor = self.module_.predictor
        self.n_ensemble_ = (
            len(predictor.members) if isinstance(predictor, PredictorEnsemble) else 1
        )
        self.gamma_readout_ = float(auto["gamma_readout"])
        self.receptive_field_ = self.core_.receptive_field
        self.n_parameters_ = int(
            sum(p.numel() for p in self.module_.parameters() if p.requires_grad)
        )

    # --------------------------------------------------------- accessors
    @property
    def core_(self):
        """The fitted core (:class:`~sklearn_cnnenc.nn.Core2d` or ``CausalCore1d``)."""
        check_is_fitted(self, "net_")
        return self.module_.predictor.core

    @property
    def readout_module_(self):
        """The fitted readout module."""
        check_is_fitted(self, "net_")
        return self.module_.predictor.readout

    def __setstate__(self, state):
        if "_fit_layout" in state:  # pickled before input_layout_ was public
            state["input_layout_"] = InputLayout(*state.pop("_fit_layout"))
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


# ----------------------------------------------------------- "auto" rules
# Thresholds of the data-dependent defaults, named so that the docstring,
# resolve_auto_defaults and the tests agree.
_DEEP_MIN_SAMPLES = 1500  # a third layer pays off from this many samples
_SMALL_MIN_SAMPLES = 2000  # below this, n_ensemble="auto" averages 5 fits
_ENSEMBLE_SIZE = 5
_READOUT_PRIOR = 10.0  # gamma_readout="auto" is this times response_scale / n_train
# ... but at most this times response_scale: stronger priors zero the readout
# of small models in the first epochs, before the core has learned a feature
_READOUT_PRIOR_MAX = 0.02
_MIN_VALID_SAMPLES = 200  # validation sets at least this big (up to 20%)
_PATIENCE_STEPS = 1000  # optimizer steps without improvement before stopping
_MAX_STEPS = 8000  # optimizer steps budgeted for max_epochs="auto"


def _odd(value: float) -> int:
    return 2 * int(value // 2) + 1


def resolve_auto_defaults(
    *,
    input_type: str,
    input_shape: tuple,
    n_samples: int,
    n_neurons: int,
    batch_size: int = 64,
    early_stopping: bool = True,
    n_layers="auto",
    channels="auto",
    kernel_size="auto",
    max_epochs="auto",
    patience="auto",
    validation_fraction="auto",
    n_ensemble="auto",
    gamma_readout="auto",
    response_scale: float = 1.0,
    sample_weight_sum: float | None = None,
) -> dict:
    """Resolve the ``"auto"`` settings of :class:`CNNEncoder` from the data's shape.

    Deterministic: the result depends only on the arguments (the sample
    shape, the numbers of samples and neurons, the batch size), never on
    the values of the data. Settings that are not ``"auto"`` are returned
    unchanged. With ``n`` samples, ``K`` neurons, images of side ``S =
    min(H, W)`` and ``B`` samples per batch:

    * ``n_layers``: 2, or 3 from 1,500 samples on (deeper cores need
      data; on 1,500-2,000 simulated V1 images of 16-20 px a third layer of
      16 channels beat two layers, on 700 it did not); below 1,500 images,
      :class:`CNNEncoder` fits one layer too and keeps the better of the two
      (this function gives the two-layer settings; pass ``n_layers=1`` for
      the other's);
      time series: 2 (on the recorded auditory receptor, 9,960 bins of 40
      lags, a third layer gained 0.021 bits/spike with one stimulus and
      lost 0.015 with the other).
    * ``kernel_size``: images, a first layer of about a third of the image
      (``S / 3`` rounded down to an odd number, within ``[3, 13]``), then
      5 (3 below 16 px); time series: ``(9, 5)``.
    * ``channels``: ``8 * floor(sqrt(K))`` within ``[16, 64]`` (more neurons
      share, and need, more features); for images at most ``sqrt(n_train *
      K) / k`` rounded down to a multiple of 8, and at least 8, with ``k``
      the hidden layers' kernel size, so that a hidden layer's ``C * C * k
      * k`` weights do not outnumber the ``n_train * K`` training responses
      (700 samples of 6 neurons: 16 channels, not 24). Three layers of 16
      channels cost about as much per epoch as two of 24.
    * ``validation_fraction``: ``200 / n`` within ``[0.1, 0.2]``: at least
      200 validation samples when that costs at most a fifth of the data,
      so that early stopping does not follow noise.
    * ``patience``: about 1,000 optimizer steps, ``ceil(1000 / n_batches)``
      within ``[8, 50]`` epochs, where ``n_batches = ceil(n_train / B)``:
      small data sets have few steps per epoch and need more epochs. The
      learning rate is cut after a third of it without improvement, so
      patience also sets how long the model trains at the full rate: with
      400 steps (10 epochs of 3,000 images) a noisy validation loss cut the
      rate after three epochs and the fit stopped early (trial-averaged
      responses, r = 0.874 with the true rates against 0.907 at 1,000
      steps; ``benchmarks/bench_defaults.py``). From about 8,500 samples on
      the floor of 8 epochs rules, and below about 1,300 the cap of 50.
    * ``max_epochs``: about 8,000 steps, ``ceil(8000 / n_batches)`` within
      ``[40, 400]``.
    * ``n_ensemble``: 5 fits averaged below 2,000 samples (small fits are
      cheap, and their error is mostly variance, which averaging removes),
      else 1.
    * ``gamma_readout``: ``10 * response_scale / n_train``: an L1 prior on
      the readout (each neuron reads few positions and features) of fixed
      strength in the summed log-likelihood, so that it matters with little
      data and fades with more; but at most ``0.02 * response_scale``
      (below 500 training samples): the data's gradient on a readout weight
      does not grow as the data shrink, and a prior above about ``0.035 *
      response_scale`` zeroes a small model's readout in the first epochs,
      before its core has learned a feature (a one-layer model then
      predicts the mean rate).

    Parameters
    ----------
    input_type : {"image", "time_series", "video"}
    input_shape : tuple of int
        One sample as the core sees it: ``(C, H, W)``, ``(C, T)`` or ``(T,
        C, H, W)`` (movies follow the image rules, with one model).
    n_samples, n_neurons : int
    batch_size : int, default=64
    early_stopping : bool, default=True
        Without it, no samples are held out (``n_train = n``).
    n_layers, channels, kernel_size, max_epochs, patience, validation_fraction, \
n_ensemble, gamma_readout
        The estimator's settings; ``"auto"`` ones are resolved.
    response_scale : float, default=1.0
        Scale of the responses in the training loss: the mean count per
        neuron for count families, the standard deviation for the Gaussian
        (whose loss is in squared response units), 1 for Bernoulli.
    sample_weight_sum : float, optional
        Number of samples of positive weight, if the fit is weighted: the
        readout prior counts only the samples that take part.

    Returns
    -------
    resolved : dict
        The eight settings, ``"auto"`` replaced.

    Examples
    --------
    >>> from sklearn_cnnenc.cnn import resolve_auto_defaults
    >>> resolved = resolve_auto_defaults(
    ...     input_type="image", input_shape=(1, 20, 20), n_samples=9500, n_neurons=4)
    >>> resolved["n_layers"], resolved["kernel_size"], resolved["channels"]
    (3, [7, 5], 16)
    >>> resolved["patience"], resolved["max_epochs"], resolved["n_ensemble"]
    (8, 60, 1)
    """
    image = input_type in ("image", "video")
    side = min(input_shape[-2:]) if image else input_shape[-1]
    if n_layers == "auto":
        n_layers = 3 if image and n_samples >= _DEEP_MIN_SAMPLES else 2
    if kernel_size == "auto":
        if image:
            first = min(max(_odd(side / 3), 3), 13, _odd(side - 1) if side > 1 else 1)
            kernel_size = [first, 5 if side >= 16 else 3]
        else:
            kernel_size = [9, 5]
    if validation_fraction == "auto":
        validation_fraction = float(np.clip(_MIN_VALID_SAMPLES / n_samples, 0.1, 0.2))
    n_valid = int(np.ceil(validation_fraction * n_samples)) if early_stopping else 0
    n_batches = max(1, int(np.ceil(max(n_samples - n_valid, 1) / batch_size)))
    if channels == "auto":
        channels = int(np.clip(8 * np.floor(np.sqrt(n_neurons)), 16, 64))
        if image:
            # a hidden layer's C * C * k * k weights at most the n_train * K
            # training responses: small data sets get narrower cores
            sizes = list(kernel_size) if isinstance(kernel_size, (list, tuple)) else [kernel_size]
            hidden = int(sizes[1] if len(sizes) > 1 else sizes[0])
            fit = np.sqrt(max(n_samples - n_valid, 1) * n_neurons) / hidden
            channels = int(min(channels, max(8, 8 * np.floor(fit / 8))))
    if patience == "auto":
        patience = int(np.clip(np.ceil(_PATIENCE_STEPS / n_batches), 8, 50))
    if max_epochs == "auto":
        max_epochs = int(np.clip(np.ceil(_MAX_STEPS / n_batches), 40, 400))
    if n_ensemble == "auto":
        small = n_samples < _SMALL_MIN_SAMPLES and input_type != "video"
        n_ensemble = _ENSEMBLE_SIZE if small else 1
    elif input_type == "video" and n_ensemble != 1:
        raise ValueError(
            f"input_type='video' fits one model: n_ensemble must be 1; got {n_ensemble}."
        )
    if gamma_readout == "auto":
        n_train = n_samples - n_valid
        if sample_weight_sum is not None:
            n_train = sample_weight_sum * (n_train / n_samples)
        gamma_readout = float(response_scale) * min(
            _READOUT_PRIOR / max(n_train, 1.0), _READOUT_PRIOR_MAX
        )
    return {
        "n_layers": n_layers,
        "channels": channels,
        "kernel_size": kernel_size,
        "max_epochs": max_epochs,
        "patience": patience,
        "validation_fraction": validation_fraction,
        "n_ensemble": n_ensemble,
        "gamma_readout": gamma_readout,
    }
