"""The shared estimator base: validation, training, prediction and scoring.

``PoissonGLM``, ``LNModel`` and ``CNNEncoder`` differ only in the torch module
they build (and how they train it); everything else is written once here:

* input checks (``validate_data``, the family's response check, sample
  weights, offsets), seeding and device placement;
* building the :class:`~sklearn_cnnenc.nn.EncodingModule` and fitting it
  with an :class:`~sklearn_cnnenc.training.EncoderNet`, from ``_n_restarts()``
  random initialisations if the model is not convex (see :meth:`BaseEncoder._select`,
  the one place restarts are trained and chosen);
* persistence: a model fitted on a GPU predicts on the CPU after unpickling
  on a machine without one;
* ``predict`` (expected response per bin), ``score`` (mean held-out
  log-likelihood per sample and neuron, constants included), per-sample
  ``log_likelihood``, ``predict_distribution`` and ``sample``.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from .data import LazyArray, StreamingBatchIterator, make_dataset
from .distributions import FAMILIES, Family, ResponseDistribution, get_family
from .links import LINKS
from .metrics import _check_sample_weight
from .nn import EncodingModule
from .training import (
    EncoderNet,
    NegativeLogLikelihood,
    ValidationSplit,
    available_device,
)
from .utils._missing import observation_groups
from .utils._threads import limits_threads

__all__ = ["BaseEncoder"]

# Mean responses used to place the initial intercept are kept inside the
# link's domain: a silent neuron starts at a rate of 1e-10 per bin (a finite
# intercept), never at log(0).
_MIN_INITIAL_MEAN = 1e-10

# Building a module draws its initial weights from torch's global generator,
# which every thread of the process shares: fits in joblib threads seed it and
# build their modules one at a time. Training then draws only from per-fit
# generators (batch order, the Gaussian readout's sampled positions), so fits
# in threads equal serial fits.
_GLOBAL_RNG_LOCK = threading.Lock()


def _seed_module_generators(module: torch.nn.Module, seed: int, device: torch.device) -> None:
    """Give every submodule that samples in training (``generator`` attribute) its own."""
    for index, submodule in enumerate(module.modules()):
        if hasattr(submodule, "generator"):
            generator = torch.Generator(device=device)
            submodule.generator = generator.manual_seed(seed + index)


# the shared documentation of the ``missing_responses`` parameter
_MISSING_DOC = """missing_responses : {"raise", "mask"}, default="raise"
        What a NaN in ``y`` means. ``"raise"``: an error. ``"mask"``: a
        response that was not recorded (a neuron of another session, a
        dropped trial): NaN entries drop out of the training likelihood
        (each neuron's loss is its mean negative log-likelihood over its own
        observed entries, per batch), of the validation loss that early
        stopping watches, of the starting intercepts (mean over observed
        entries), of ``score`` (mean over observed entries) and of
        ``log_likelihood`` (NaN there). A neuron with no observed entry is a
        ValueError naming its column. Memory: the mask is derived from the
        NaNs per batch, plus a transient boolean copy at fit time (1 byte
        per entry); no dense float64 copy of ``y`` is made. A float32
        response matrix of 7 sessions x 6,000 trials x 8,000 neurons (336M
        entries) takes 1.3 GB, 1.7 GB with the mask."""


class _RegisteredFamilies(StrOptions):
    """The names in the family registry, read when validated (families registered later count)."""

    def __init__(self) -> None:
        super().__init__(set())

    @property
    def options(self):
        return set(FAMILIES)

    @options.setter
    def options(self, value) -> None:  # set by the parent's __init__; the registry rules
        pass


@dataclass
class _FitProblem:
    """Everything the fitting phases share: validated data, family, link, seeds, tensors.

    Made by ``_prepare_fit`` and passed explicitly to every later phase (no
    phase reads state that another left on the estimator). ``n_restarts``
    random starts are trained either as ``len(seeds) == n_restarts``
    separate trainings or, when ``batched``, as ``n_restarts`` copies of
    every neuron's problem in one training from ``seeds[0]``.
    """

    X: np.ndarray
    y: np.ndarray
    y_2d: np.ndarray
    sample_weight: np.ndarray | None
    family: Family
    link: object
    device: torch.device
    dtype: torch.dtype
    warm: bool
    seeds: list
    n_restarts: int
    batched: bool
    mean_response: np.ndarray
    start: tuple | None
    inputs: dict
    targets: torch.Tensor
    observed: np.ndarray | None = None


def _column_mean(y_2d, sample_weight=None, observed=None) -> np.ndarray:
    """Each neuron's (weighted) mean response over its observed entries.

    Without a mask, ``np.average``. With one, row blocks are reduced in turn,
    so no dense copy of ``y`` is made (a float64 copy of a 336M-entry
    response matrix would take 2.7 GB).
    """
    if observed is None:
        return np.average(y_2d, axis=0, weights=sample_weight)
    total = np.zeros(y_2d.shape[1])
    count = np.zeros(y_2d.shape[1])
    step = max(1, 2**22 // max(1, y_2d.shape[1]))
    for start in range(0, len(y_2d), step):
        block = slice(start, start + step)
        mask = observed[block]
        weight = mask.astype(np.float64)
        if sample_weight is not None:
            weight *= sample_weight[block, None]
        total += (np.where(mask, y_2d[block], 0.0) * weight).sum(axis=0)
        count += weight.sum(axis=0)
    return total / count


def _estimate_dispersion(family, y_2d, mean, sample_weight=None, observed=None):
    """The family's dispersion estimate, from each neuron's observed entries only."""
    if observed is None or observed.all():
        return family.estimate_dispersion(y_2d, mean, sample_weight)
    result = None
    for rows, columns in observation_groups(observed):
        weight = None if sample_weight is None else sample_weight[rows]
        value = family.estimate_dispersion(
            y_2d[np.ix_(rows, columns)], np.asarray(mean)[np.ix_(rows, columns)], weight
        )
        if value is None:
            return None
        value = np.asarray(value)
        if result is None:  # one value per neuron, or a row of them (zig: q and phi)
            result = np.empty((y_2d.shape[1], *value.shape[1:]))
        result[columns] = value
    return result


def _best_restart(losses) -> np.ndarray:
    """Index of the best restart along axis 0 of ``losses`` (n_restarts, n_problems).

    The one selection rule of every fit: the lowest loss wins, NaN counts as
    +inf (a diverged restart never wins), ties go to the earliest restart.
    """
    losses = np.nan_to_num(np.asarray(losses, dtype=np.float64), nan=np.inf)
    return np.argmin(losses, axis=0)


def _selection_loss(history, monitor: str = "valid_loss", lower_is_better: bool = True) -> float:
    """Loss that ranks restarts: the best validation score, else the final training loss.

    The validation score is the history's ``monitor`` (negated where higher
    is better, so that the lowest loss still wins).
    """
    valid = [row[monitor] for row in history if monitor in row]
    if valid:
        return float(np.min(valid) if lower_is_better else -np.max(valid))
    if len(history) and "train_loss" in history[-1]:
        return float(history[-1, "train_loss"])
    return np.inf


def resolve_device(device: str) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` into a torch device.

    Parameters
    ----------
    device : str
        ``"cpu"``; ``"cuda"``, the current GPU; ``"cuda:N"``, GPU number N
        (which must exist on this machine); or ``"auto"``, the current GPU if
        CUDA is available, else the CPU.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        For an unknown device string, CUDA where it is not available, or a
        GPU number this machine does not have.

    Examples
    --------
    >>> from sklearn_cnnenc._base import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu'; got {type(device).__name__}.")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    available = _available_devices()
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"Unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto' "
            f"(available here: {available})."
        ) from None
    if resolved.type not in ("cpu", "cuda"):
        # mps, xpu, meta, hpu...: torch knows the name but the library's fits
        # (float64 solvers, CUDA random generators) support only CPU and CUDA
        raise ValueError(
            f"device={device!r} is not supported: sklearn-cnnenc runs on 'cpu' or "
            f"'cuda[:N]' (available here: {available})."
        )
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available here "
                f"(available: {available})."
            )
        n_gpus = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= n_gpus:
            raise ValueError(
                f"device={device!r} was requested but this machine has {n_gpus} GPU(s), "
                f"numbered 0 to {n_gpus - 1} (available: {available})."
            )
    return resolved


def _available_devices() -> str:
    """The devices this machine offers, for error messages: 'cpu, cuda:0, cuda:1'."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return ", ".join(names)


class BaseEncoder(RegressorMixin, BaseEstimator):
    """Base class of all encoding models (not for direct use).

    Subclasses implement ``_build_predictor`` (the torch module mapping
    validated inputs to one linear predictor per neuron) and
    ``_net_params`` (optimizer, epochs, batch size, callbacks); they may
    override ``_validate_X`` for inputs that are not flat feature matrices,
    ``_torch_dtype`` (default: follow the input precision), ``_n_restarts``
    (random starts, default 1), ``_batches_restarts`` (whether those starts
    are trained as one batched problem, kept per neuron, rather than one
    after the other; default False), ``_default_link`` (what ``link="auto"`` means; default the
    family's canonical link), ``_predictor_nonnegative`` (whether the linear
    predictor is positive by construction, which admits the identity link
    for counts; default False), ``_initialize_module`` (the starting point;
    default each neuron's mean rate and marginal dispersion; it receives the
    fit's ``_FitProblem``) and ``_set_fitted_attributes`` to expose readable
    parameters. Hooks get what they need as arguments, or read documented
    fitted state that ``_validate_X(X, reset=True)`` records at the start
    of the prepare phase (``n_features_in_``; ``CNNEncoder.input_layout_``).

    ``fit`` runs four phases: ``_prepare_fit`` (validation, seeds, tensors
    on the device once), ``_train_one_seed`` (per seed), ``_select`` (the
    best restart) and ``_finalise_fit`` (fitted attributes). The fitted
    surface other tools use is public: ``module_`` (the torch module),
    ``sample_shape_`` (one sample as the module takes it), ``as_tensor(X)``,
    ``family_``, ``link_`` and ``dispersion_``. See ``docs/ARCHITECTURE.md``.

    Subclasses take ``missing_responses`` (``"raise"`` or ``"mask"``, see
    ``_MISSING_DOC``) and may override ``_check_covariates`` and
    ``_build_modulator`` to take ``behavior=`` / ``eye_position=``.
    """

    _parameter_constraints: dict = {
        "family": [_RegisteredFamilies(), Family],
        "link": [StrOptions({"auto", *LINKS})],
        "warm_start": ["boolean"],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "missing_responses": [StrOptions({"raise", "mask"})],
    }

    # ------------------------------------------------------------------ hooks
    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """Validated inputs for the module (default: a 2-D float matrix)."""
        return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])

    def _torch_dtype(self, X: np.ndarray) -> torch.dtype:
        """Parameters and data follow the input precision (as scikit-learn does)."""
        return torch.float64 if X.dtype == np.float64 else torch.float32

    def _build_predictor(self, X: np.ndarray, y: np.ndarray, dtype: torch.dtype):
        raise NotImplementedError

    def _net_params(self, n_samples: int) -> dict:
        raise NotImplementedError

    def _n_restarts(self) -> int:
        """Number of random starts of a fit (best kept, see :meth:`_select`; default 1)."""
        return 1

    def _batches_restarts(self) -> bool:
        """Whether the restarts are trained together as one batched problem (default no).

        Then ``_build_predictor`` receives ``n_copies=R`` and must give
        ``R * n_neurons`` columns (copy ``r`` of neuron ``j`` in column
        ``r * n_neurons + j``, see ``EncodingModule``), with a ``keep``
        method, and a penalty separable over the columns: the restarts are
        then chosen per neuron.
        """
        return False

    def _selection_monitor(self) -> tuple[str, bool]:
        """The history entry that ranks sequential restarts, and whether lower is better.

        Default: the validation loss (early stopping's monitor); an estimator
        that stops on another validation score ranks its restarts by it too.
        """
        return "valid_loss", True

    def _combine_restarts(self) -> str:
        """How batched restarts become the fitted model: ``"best"`` (default) or ``"average"``.

        ``"best"``: :meth:`_select` keeps each neuron's best copy (the
        predictor's ``keep``). ``"average"``: the estimator's training has
        already reduced the copies to their average (an ensemble, e.g.
        ``CNNEncoder``'s ``n_ensemble``) and the module is kept as it is.
        """
        return "best"

    def _default_link(self, family) -> str:
        """The link that ``link="auto"`` stands for (the family's canonical one)."""
        return family.default_link

    def _predictor_nonnegative(self) -> bool:
        """Whether the linear predictor is positive by construction (default: no).

        Count families then accept the identity link
        (:meth:`~sklearn_cnnenc.families.Family.validate_link`).
        """
        return False

    def _set_fitted_attributes(self) -> None:
        """Expose readable fitted parameters (``coef_`` ...) after training."""

    def _check_covariates(self, behavior, eye_position) -> None:
        """Raise unless the model takes these per-sample covariates (default: none)."""
        name = type(self).__name__
        if behavior is not None:
            raise ValueError(
                f"{name} does not take behavior=; with the exp link a behaviour gain is "
                "a linear term: add the covariates as columns of X, or use CNNEncoder."
            )
        if eye_position is not None:
            raise ValueError(
                f"{name} does not take eye_position=; it shifts the Gaussian readout of "
                "CNNEncoder(readout='gaussian')."
            )

    def _build_modulator(self, n_outputs: int, dtype: torch.dtype):
        """The behaviour modulator of the module (None: no behaviour)."""
        return None

    @property
    def _mask_missing(self) -> bool:
        return getattr(self, "missing_responses", "raise") == "mask"

    # -------------------------------------------------------------- fitting
    @limits_threads
    def fit(self, X, y, sample_weight=None, offset=None, behavior=None, eye_position=None):
        """Fit the model by maximum likelihood (plus penalties).

        Parameters
        ----------
        X : array-like
            Stimulus, of the shape the estimator documents.
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
            Responses (spike counts per bin for count families). With
            ``missing_responses="mask"``, NaN marks a neuron not recorded in
            that sample (e.g. another session's neuron).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights of the samples in the likelihood.
        offset : array-like of shape (n_samples,) or (n_samples, n_neurons), optional
            Fixed term added to the linear predictor (e.g. log exposure).
        behavior : array-like of shape (n_samples, n_covariates), optional
            Behavioural covariates (running speed, pupil size ...) that
            modulate every neuron's rate through a learned gain (models that
            support it, see ``CNNEncoder``). A model fitted with them needs
            them to predict, and one fitted without refuses them.
        eye_position : array-like of shape (n_samples, 2), optional
            Eye position per sample, which shifts the read-out positions
            (``CNNEncoder(readout="gaussian")``); likewise needed to predict.

        Returns
        -------
        self : object
        """
        problem = self._prepare_fit(X, y, sample_weight, offset, behavior, eye_position)
        nets = (self._train_one_seed(problem, seed) for seed in problem.seeds)
        net, restart_losses = self._select(problem, nets)
        self._finalise_fit(problem, net, restart_losses)
        return self

    def _prepare_fit(self, X, y, sample_weight, offset, behavior=None, eye_position=None):
        """Phase 1: validate everything, draw the seeds, move the data to the device once."""
        self._validate_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        family = get_family(self.family)
        link = family.check_link(
            self._default_link(family) if self.link == "auto" else self.link,
            predictor_nonnegative=self._predictor_nonnegative(),
        )
        device = resolve_device(self.device)

        X = self._validate_X(X, reset=True)
        y = self._validate_y(y, n_samples=X.shape[0], family=family, dtype=X.dtype)
        y_2d = y.reshape(len(y), -1)
        sample_weight = _check_sample_weight(sample_weight, y_2d)
        offset = self._validate_offset(offset, y_2d.shape, X.dtype)
        if offset is not None and link.name in family.nonnegative_links and np.any(offset < 0):
            raise ValueError(
                f"With the {link.name!r} link the {family.name!r} mean is the predictor "
                "itself, so an offset must be non-negative (an additive rate); got a "
                f"minimum of {float(np.min(offset))!r}."
            )
        self._check_covariates(behavior, eye_position)
        covariates = self._validate_covariates(behavior, eye_position, X.shape[0], X.dtype)
        # fitted state recorded with the inputs (as n_features_in_ is): the hooks
        # that build the module (_build_predictor, _build_modulator) read it
        self.n_behavior_covariates_ = (
            int(covariates["behavior"].shape[1]) if "behavior" in covariates else 0
        )
        self.uses_eye_position_ = "eye_position" in covariates
        observed = None
        if self._mask_missing:
            observed = ~np.isnan(y_2d)  # one byte per entry
            never = np.flatnonzero(~observed.any(axis=0))
            if len(never):
                raise ValueError(
                    f"{len(never)} neuron(s) have no observed response (all NaN): columns "
                    f"{never[:10].tolist()}{' ...' if len(never) > 10 else ''}; drop them."
                )
            if sample_weight is not None:
                weighted = (sample_weight[:, None] > 0) & observed
                never = np.flatnonzero(~weighted.any(axis=0))
                if len(never):
                    raise ValueError(
                        f"{len(never)} neuron(s) have no observed response of positive "
                        f"weight: columns {never[:10].tolist()}."
                    )

        warm = self.warm_start and hasattr(self, "net_")
        if warm:
            self._check_warm_start_shapes(X, y_2d)

        rng = check_random_state(self.random_state)
        # a warm start continues one fit: no restarts
        n_restarts = 1 if warm else self._n_restarts()
        batched = not warm and self._batches_restarts()
        n_trainings = 1 if batched else n_restarts
        seeds = [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(n_trainings)]
        dtype = self._torch_dtype(X)
        mean_response = _column_mean(y_2d, sample_weight, observed)
        start = None
        if not warm:
            start = self._starting_values(
                family, link, y_2d, sample_weight, mean_response, observed
            )
        # the data become tensors on the device once, shared by all restarts
        inputs = self._to_tensors(X, sample_weight, offset, dtype, device, covariates)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            targets = torch.as_tensor(y_2d, dtype=dtype, device=device)
        return _FitProblem(
            X=X, y=y, y_2d=y_2d, sample_weight=sample_weight, family=family, link=link,
            device=device, dtype=dtype, warm=warm, seeds=seeds,
            n_restarts=n_restarts, batched=batched,
            mean_response=mean_response, start=start, inputs=inputs, targets=targets,
            observed=observed,
        )

    def _train_one_seed(self, problem: _FitProblem, seed: int) -> EncoderNet:
        """Phase 2: build, initialise and train one module from one random seed."""
        device = problem.device
        fork_devices = []
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            fork_devices = [index]
        y_2d = problem.y_2d
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            # a batching estimator builds the copies of every neuron's problem
            copies = {"n_copies": problem.n_restarts} if problem.batched else {}
            predictor = self._build_predictor(problem.X, y_2d, problem.dtype, **copies)
            module = EncodingModule(
                predictor,
                problem.link,
                y_2d.shape[1],
                problem.family.trains_dispersion,
                problem.n_restarts if problem.batched else 1,
                modulator=self._build_modulator(
                    y_2d.shape[1] * (problem.n_restarts if problem.batched else 1), problem.dtype
                ),
            )
            if problem.warm:
                self._load_warm_start(module)
            else:
                self._initialize_module(module, problem)
            params = self._net_params(problem.X.shape[0])
            if isinstance(problem.X, LazyArray):
                # stimuli on disk: read mini-batches ahead in a thread
                params = {
                    **params,
                    "iterator_train": StreamingBatchIterator,
                    "iterator_valid": StreamingBatchIterator,
                }
            split = params.get("train_split")
            if isinstance(split, ValidationSplit) and split.random_state is None:
                # every restart holds out the same samples, so their
                # validation losses compare
                split.random_state = problem.seeds[0]
            net = EncoderNet(
                module.to(device),
                criterion=NegativeLogLikelihood,
                criterion__family=problem.family,
                criterion__link=problem.link,
                criterion__mask_missing=problem.observed is not None,
                iterator_train__shuffle=True,
                iterator_train__generator=torch.Generator().manual_seed(seed),
                device=device,
                verbose=self.verbose,
                **params,
            )
            net.initialize()
        _seed_module_generators(net.module_, seed, device)
        net.partial_fit(
            make_dataset(problem.inputs, problem.targets, device, problem.dtype), y=None
        )
        return net

    def _select(self, problem: _FitProblem, nets) -> tuple[EncoderNet, np.ndarray]:
        """Phase 3, the one restart mechanism: keep the best of ``n_restarts`` starts.

        Sequential restarts (one trained net per seed) are ranked by their
        best validation score (:meth:`_selection_monitor`, the validation
        loss by default), else their final training loss, and the best
        net is kept whole. Batched restarts (``_batches_restarts``: one net
        whose module holds ``n_restarts`` copies of every neuron's problem)
        are ranked per neuron by their final training objective (mean NLL
        plus penalty), and the module and the solver's per-problem state are
        reduced to each neuron's best copy. Both use :func:`_best_restart`.
        Batched restarts that the estimator averages instead
        (``_combine_restarts() == "average"``) are kept as trained and
        ranked as one.

        Returns
        -------
        net : EncoderNet
        restart_losses : ndarray of shape (n_restarts,) or (n_restarts, n_neurons)
            The loss of every restart (per neuron when batched; one entry,
            the averaged model's, when averaged).
        """
        if problem.batched and self._combine_restarts() == "average":
            # nothing to choose: no pass over the data to rank the copies
            (net,) = nets
            return net, np.array([_selection_loss(net.history, *self._selection_monitor())])
        if problem.batched:
            (net,) = nets
            losses = self._batched_restart_objectives(net, problem)
            if problem.n_restarts > 1:
                n_neurons = problem.y_2d.shape[1]
                keep = _best_restart(losses) * n_neurons + np.arange(n_neurons)
                self._keep_problems(net, torch.as_tensor(keep, device=problem.device))
            return net, losses
        best, losses = None, []
        for net in nets:
            losses.append(_selection_loss(net.history, *self._selection_monitor()))
            if _best_restart(np.array(losses)[:, None])[0] == len(losses) - 1:
                best = net
        return best, np.array(losses)

    @staticmethod
    @torch.no_grad()
    def _batched_restart_objectives(net: EncoderNet, problem: _FitProblem) -> np.ndarray:
        """Final training objective of every batched copy, shape (n_restarts, n_neurons)."""
        inputs, targets = problem.inputs, problem.targets
        objective = net.get_loss_per_output(net.infer(inputs), targets, X=inputs, training=True)
        objective = objective.view(-1, targets.shape[1]).cpu().double().numpy()
        return np.nan_to_num(objective, nan=np.inf)

    @staticmethod
    @torch.no_grad()
    def _keep_problems(net: EncoderNet, keep: torch.Tensor) -> None:
        """Reduce the module and the solver's per-problem state to the problems ``keep``."""
        net.module_.keep(keep)
        state = net.optimizer_.state
        kept_state = {
            key: state[key][keep.to(state[key].device)]
            for key in ("n_iter", "converged", "failed")
            if key in state
        }
        # a fresh optimizer over the kept parameters, with their own iteration
        # counts and convergence flags (read by the estimator's n_iter_)
        net.initialize_optimizer()
        net.optimizer_.state.update(kept_state)

    def _finalise_fit(
        self, problem: _FitProblem, net: EncoderNet, restart_losses: np.ndarray
    ) -> None:
        """Phase 4: the fitted attributes, the dispersion estimate and the subclass's own."""
        training_eta = None
        if problem.family.has_dispersion and not problem.family.trains_dispersion:
            training_eta = net.forward(problem.inputs, device=problem.device)
        self.net_ = net
        self.family_ = problem.family
        self.link_ = problem.link
        self.device_ = problem.device
        self.n_outputs_ = problem.y_2d.shape[1]
        self._y_ndim = problem.y.ndim
        self.sample_shape_ = tuple(problem.X.shape[1:])
        self.mean_response_ = problem.mean_response
        self.dispersion_ = self._fitted_dispersion(
            problem.y_2d, training_eta, problem.sample_weight, problem.observed
        )
        self.n_iter_ = self._n_iter()
        self._set_fitted_attributes()

    # ------------------------------------------------------- fitted surface
    @property
    def module_(self) -> EncodingModule:
        """The fitted torch module (:class:`~sklearn_cnnenc.nn.EncodingModule`).

        Maps a batch of inputs shaped ``(n, *sample_shape_)`` (see
        :meth:`as_tensor`) to the linear predictor, one column per neuron.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_cnnenc import PoissonGLM
        >>> X = np.random.RandomState(0).normal(size=(50, 3))
        >>> y = np.random.RandomState(1).poisson(1.0, size=50)
        >>> model = PoissonGLM().fit(X, y)
        >>> eta = model.module_(model.as_tensor(X[:4]))
        >>> np.allclose(model.link_.inverse(eta).detach().numpy()[:, 0], model.predict(X[:4]))
        True
        """
        check_is_fitted(self, "net_")
        return self.net_.module_

    def as_tensor(self, X) -> torch.Tensor:
        """Validated inputs as a tensor of the module's dtype, on the model's device.

        Parameters
        ----------
        X : array-like
            Stimulus, shaped as for ``fit``.

        Returns
        -------
        X : tensor of shape (n_samples, *sample_shape_)
            What :attr:`module_` takes.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_cnnenc import PoissonGLM
        >>> X = np.random.RandomState(0).normal(size=(50, 3))
        >>> model = PoissonGLM().fit(X, np.random.RandomState(1).poisson(1.0, size=50))
        >>> tuple(model.as_tensor(X[:4]).shape), model.sample_shape_
        ((4, 3), (3,))
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        dtype = next(self.module_.parameters()).dtype
        return self._to_tensors(X, None, None, dtype, self.device_)["X"]

    def _validate_covariates(self, behavior, eye_position, n_samples: int, dtype) -> dict:
        """Behaviour ``(n, n_covariates)`` and eye position ``(n, 2)`` as finite 2-D arrays."""
        covariates = {}
        for name, value in (("behavior", behavior), ("eye_position", eye_position)):
            if value is None:
                continue
            value = check_array(value, ensure_2d=False, dtype=dtype, input_name=name)
            if value.ndim == 1:
                value = value[:, None]
            if value.ndim != 2 or value.shape[0] != n_samples:
                raise ValueError(
                    f"{name} must have shape (n_samples, n_covariates) with n_samples = "
                    f"{n_samples}; got {value.shape}."
                )
            if name == "eye_position" and value.shape[1] != 2:
                raise ValueError(
                    f"eye_position must have 2 columns (horizontal, vertical); got {value.shape}."
                )
            covariates[name] = value
        return covariates

    def _check_fitted_covariates(self, behavior, eye_position, n_samples, dtype) -> dict:
        """Covariates at prediction time: exactly those the model was fitted with."""
        fitted = {
            "behavior": getattr(self, "n_behavior_covariates_", 0) > 0,
            "eye_position": getattr(self, "uses_eye_position_", False),
        }
        for name, value in (("behavior", behavior), ("eye_position", eye_position)):
            if fitted[name] and value is None:
                raise ValueError(
                    f"This {type(self).__name__} was fitted with {name}=; pass {name}= "
                    "for the samples to predict as well."
                )
            if not fitted[name] and value is not None:
                raise ValueError(
                    f"This {type(self).__name__} was fitted without {name}=; it cannot use "
                    f"{name} now. Refit with {name}= to model it."
                )
        covariates = self._validate_covariates(behavior, eye_position, n_samples, dtype)
        if "behavior" in covariates and (
            covariates["behavior"].shape[1] != self.n_behavior_covariates_
        ):
            raise ValueError(
                f"behavior has {covariates['behavior'].shape[1]} column(s) but the model was "
                f"fitted with {self.n_behavior_covariates_}."
            )
        return covariates

    def _validate_y(self, y, *, n_samples: int, family, dtype) -> np.ndarray:
        # X and y are validated separately so that errors name which one is wrong
        missing = "allow-nan" if self._mask_missing else True
        y = check_array(
            y, ensure_2d=False, dtype=dtype, input_name="y", ensure_min_samples=1,
            ensure_all_finite=missing,
        )
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D (samples x neurons); got shape {y.shape}.")
        if y.ndim == 2 and y.shape[1] == 0:
            raise ValueError("y has no columns (neurons).")
        check_consistent_length(np.empty((n_samples, 0)), y)
        if self._mask_missing:
            nan = np.isnan(y)
            family.validate_response(y[~nan] if nan.any() else y)
        else:
            family.validate_response(y)
        return y

    def _validate_offset(self, offset, y_shape, dtype):
        if offset is None:
            return None
        offset = check_array(offset, ensure_2d=False, dtype=dtype, input_name="offset")
        if offset.ndim == 1:
            offset = offset[:, None]
        if offset.shape[0] != y_shape[0] or offset.shape[1] not in (1, y_shape[1]):
            raise ValueError(
                f"offset must have shape ({y_shape[0]},) or {y_shape}; got {offset.shape}."
            )
        return offset

    def _check_warm_start_shapes(self, X, y_2d) -> None:
        if X.shape[1:] != self.sample_shape_ or y_2d.shape[1] != self.n_outputs_:
            raise ValueError(
                "warm_start needs inputs and responses shaped as in the previous fit: "
                f"inputs {self.sample_shape_} and {self.n_outputs_} neuron(s), got "
                f"{X.shape[1:]} and {y_2d.shape[1]}."
            )

    def _load_warm_start(self, module) -> None:
        """Start from the previous fit's parameters, which must fit the new module."""
        previous = self.net_.module_.state_dict()
        current = module.state_dict()

        def shape(state, key) -> str:
            return str(tuple(state[key].shape)) if key in state else "absent"

        changed = sorted(
            f"{key} {shape(previous, key)} -> {shape(current, key)}"
            for key in previous.keys() | current.keys()
            if shape(previous, key) != shape(current, key)
        )
        if changed:
            raise ValueError(
                "warm_start cannot continue the previous fit: the parameters changed since "
                f"(family, fit_intercept or architecture): {'; '.join(changed[:5])}"
                f"{' ...' if len(changed) > 5 else ''}. Refit with warm_start=False."
            )
        module.load_state_dict(previous)

    def _starting_values(
        self, family, link, y_2d, sample_weight, mean_response=None, observed=None
    ):
        """Linear predictor of each neuron's mean response, and its raw marginal dispersion.

        Returns ``(eta, raw_dispersion)`` as arrays of shape (n_neurons,);
        ``raw_dispersion`` is None unless the family trains its dispersion.
        """
        mean = mean_response
        if mean is None:
            mean = _column_mean(y_2d, sample_weight, observed)
        if link.positive:
            mean = np.maximum(mean, _MIN_INITIAL_MEAN)
        low, high = family.mean_bounds
        if np.isfinite(high):
            # a mean at the upper bound (a probability of one) has no finite predictor
            mean = np.minimum(mean, high - _MIN_INITIAL_MEAN)
        raw = None
        if family.trains_dispersion:
            dispersion = _estimate_dispersion(
                family, y_2d, np.broadcast_to(mean, y_2d.shape), sample_weight, observed
            )
            raw = family.raw_from_dispersion(dispersion)
        return link.link(mean), raw

    def _initialize_module(self, module, problem: _FitProblem) -> None:
        """Start each neuron at its mean rate (and its marginal dispersion).

        Uses ``problem.start``, what :meth:`_starting_values` returns,
        computed once per fit for all restarts.
        """
        eta, raw = problem.start
        dtype = next(module.parameters()).dtype
        # every batched copy of a neuron starts where the neuron does
        copies = module.n_restarts
        if hasattr(module.predictor, "initialize_intercept"):
            module.predictor.initialize_intercept(
                torch.as_tensor(eta, dtype=dtype).repeat(copies)
            )
        if module.raw_dispersion is not None:
            with torch.no_grad():
                module.raw_dispersion.copy_(torch.as_tensor(raw, dtype=dtype).repeat(copies))

    def _to_tensors(self, X, sample_weight, offset, dtype, device, covariates=None) -> dict:
        """Inputs as tensors on the device, converted once (no copy on CPU when possible).

        A :class:`~sklearn_cnnenc.data.LazyArray` stays on disk: it is streamed.
        """
        if isinstance(X, LazyArray):
            inputs = {"X": X}
        else:
            inputs = None
        with warnings.catch_warnings():
            # read-only inputs (memmaps) are shared, never written to
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            if inputs is None:
                inputs = {"X": torch.as_tensor(X, dtype=dtype, device=device)}
        if sample_weight is not None and not np.all(sample_weight == sample_weight[0]):
            # mean 1, as NegativeLogLikelihood expects of the full data; equal
            # weights are no weights (the full-batch path then has none)
            sample_weight = sample_weight / np.mean(sample_weight)
            inputs["sample_weight"] = torch.as_tensor(sample_weight, dtype=dtype, device=device)
        if offset is not None:
            inputs["offset"] = torch.as_tensor(offset, dtype=dtype, device=device)
        for name, value in (covariates or {}).items():
            inputs[name] = torch.as_tensor(value, dtype=dtype, device=device)
        return inputs

    def _fitted_dispersion(self, y_2d, training_eta, sample_weight, observed=None):
        """Trained dispersion, or the family's estimate from the training fit."""
        raw = self.net_.module_.raw_dispersion
        if raw is not None:
            return self.family_.dispersion_from_raw(raw.detach().cpu().double()).numpy()
        if training_eta is None:
            return None
        mean = self._mean_from_eta(training_eta)
        return _estimate_dispersion(self.family_, y_2d, mean, sample_weight, observed)

    def _n_iter(self) -> int:
        state = getattr(self.net_.optimizer_, "state", {})
        if "n_iter" in state and getattr(self.net_.optimizer_, "separable", False):
            n_iter = state["n_iter"]
            converged = state["converged"]
            if not bool(torch.all(converged)):
                failed = state.get("failed", torch.zeros_like(converged)) & ~converged
                n_failed = int(failed.sum())
                n_max_iter = int((~converged).sum()) - n_failed
                reasons = []
                if n_max_iter:
                    reasons.append(
                        f"{n_max_iter} reached max_iter={int(n_iter.max())} before the "
                        "gradient test (tol) or the objective test was met; increase max_iter"
                    )
                if n_failed:
                    reasons.append(
                        f"{n_failed} stopped because the line search found no lower objective "
                        "(the gradient is above tol but the objective no longer decreases in "
                        "this precision; use float64 inputs or a larger tol)"
                    )
                warnings.warn(
                    f"The solver did not converge for {int((~converged).sum())} of "
                    f"{len(converged)} problem(s): " + "; ".join(reasons) + ".",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            return int(n_iter.max())
        return len(self.net_.history)

    # ------------------------------------------------------------ prediction
    def _linear_predictor(self, X, offset=None, behavior=None, eye_position=None):
        """Linear predictor ``eta``, a tensor of shape (n_samples, n_outputs) on the device."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        dtype = next(self.net_.module_.parameters()).dtype
        offset = self._validate_offset(offset, (X.shape[0], self.n_outputs_), X.dtype)
        covariates = self._check_fitted_covariates(behavior, eye_position, X.shape[0], X.dtype)
        inputs = self._to_tensors(X, None, offset, dtype, self.device_, covariates)
        return self.net_.forward(inputs, device=self.device_)

    def _mean_from_eta(self, eta: torch.Tensor) -> np.ndarray:
        return self.link_.inverse(eta).detach().cpu().double().numpy()

    def _shape_like_y(self, array: np.ndarray) -> np.ndarray:
        return array[:, 0] if self._y_ndim == 1 else array

    @limits_threads
    def predict(self, X, offset=None, behavior=None, eye_position=None):
        """Expected response E[y | x] (e.g. spike count per bin).

        Parameters
        ----------
        X : array-like
            Stimulus, shaped as for ``fit``.
        offset : array-like, optional
            Fixed term added to the linear predictor, as in ``fit``.
        behavior : array-like of shape (n_samples, n_covariates), optional
            Needed exactly when the model was fitted with ``behavior=``.
        eye_position : array-like of shape (n_samples, 2), optional
            Needed exactly when the model was fitted with ``eye_position=``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_neurons)
            Same shape and units as the ``y`` seen in ``fit``.
        """
        eta = self._linear_predictor(X, offset, behavior, eye_position)
        return self._shape_like_y(self._mean_from_eta(eta))

    def predict_distribution(
        self, X, offset=None, behavior=None, eye_position=None
    ) -> ResponseDistribution:
        """The predicted distribution p(y | x) of every sample.

        Parameters
        ----------
        X : array-like
        offset : array-like, optional
        behavior : array-like of shape (n_samples, n_covariates), optional
            Needed exactly when the model was fitted with ``behavior=``.
        eye_position : array-like of shape (n_samples, 2), optional
            Needed exactly when the model was fitted with ``eye_position=``.

        Returns
        -------
        distribution : ResponseDistribution
            Holds the family, link, linear predictors of shape (n_samples,
            n_neurons) and dispersion; ``distribution.mean`` is the expected
            response and ``distribution.log_prob(y)`` broadcasts.
        """
        eta = self._linear_predictor(X, offset, behavior, eye_position)
        eta = eta.detach().cpu().double().numpy()
        return ResponseDistribution(self.family_, self.link_, eta, self.dispersion_)

    def log_likelihood(
        self,
        X,
        y,
        *,
        offset=None,
        per_neuron: bool = False,
        behavior=None,
        eye_position=None,
    ) -> np.ndarray:
        """Log-likelihood log p(y | x) of each sample, in nats, constants included.

        Parameters
        ----------
        X : array-like
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
            With ``missing_responses="mask"``, NaN entries are not scored.
        offset : array-like, optional
        per_neuron : bool, default=False
            Return one value per sample and neuron instead of the sum over
            neurons (neurons are conditionally independent given x).
        behavior : array-like of shape (n_samples, n_covariates), optional
            Needed exactly when the model was fitted with ``behavior=``.
        eye_position : array-like of shape (n_samples, 2), optional
            Needed exactly when the model was fitted with ``eye_position=``.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,) or (n_samples, n_neurons)
            With ``missing_responses="mask"``: NaN at the missing entries
            (``per_neuron=True``), or the sum over each sample's observed
            neurons.
        """
        distribution = self.predict_distribution(X, offset, behavior, eye_position)
        n_samples = len(distribution.eta)
        y = self._validate_y(y, n_samples=n_samples, family=self.family_, dtype=np.float64)
        y = y.reshape(n_samples, -1)
        if y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y.shape[1]} neuron(s) but the model was fitted on {self.n_outputs_}."
            )
        missing = np.isnan(y) if self._mask_missing else None
        if missing is None or not missing.any():
            log_prob = distribution.log_prob(y)
            return log_prob if per_neuron else log_prob.sum(axis=1)
        log_prob = distribution.log_prob(np.where(missing, 1.0, y))  # 1: valid in every family
        log_prob[missing] = np.nan
        return log_prob if per_neuron else np.nansum(log_prob, axis=1)

    @limits_threads
    def score(self, X, y, sample_weight=None, offset=None, behavior=None, eye_position=None):
        """Mean log-likelihood per sample and neuron, in nats (higher is better).

        Constants such as ``log y!`` are included, so scores of different
        models on the same data compare directly.

        Parameters
        ----------
        X : array-like
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights of the samples, with a positive sum; samples
            of weight zero are left out.
        offset : array-like, optional
            Fixed term added to the linear predictor, as in ``fit``.
        behavior : array-like of shape (n_samples, n_covariates), optional
            Needed exactly when the model was fitted with ``behavior=``.
        eye_position : array-like of shape (n_samples, 2), optional
            Needed exactly when the model was fitted with ``eye_position=``.

        Returns
        -------
        score : float
            With ``missing_responses="mask"``, the mean over the observed
            entries only (each weighted by its sample's weight).
        """
        log_prob = self.log_likelihood(
            X, y, offset=offset, per_neuron=True, behavior=behavior, eye_position=eye_position
        )
        if self._mask_missing:
            observed = ~np.isnan(log_prob)
            sample_weight = _check_sample_weight(sample_weight, log_prob)
            weight = observed.sum(axis=1).astype(float)
            if sample_weight is not None:
                weight = weight * sample_weight
            keep = weight > 0
            if not keep.any():
                raise ValueError("No observed response (all NaN or of zero weight) to score.")
            per_sample = np.nanmean(log_prob[keep], axis=1)
            return float(np.average(per_sample, weights=weight[keep]))
        log_prob = log_prob.mean(axis=1)
        sample_weight = _check_sample_weight(sample_weight, log_prob)
        if sample_weight is None:
            return float(np.mean(log_prob))
        # left out, not multiplied by zero: a -inf there would make the score nan
        keep = sample_weight > 0
        return float(np.average(log_prob[keep], weights=sample_weight[keep]))

    def sample(
        self, X, random_state=None, offset=None, behavior=None, eye_position=None
    ) -> np.ndarray:
        """Draw responses from the fitted model.

        Parameters
        ----------
        X : array-like
        random_state : int, RandomState instance or None
        offset : array-like, optional
        behavior : array-like of shape (n_samples, n_covariates), optional
            Needed exactly when the model was fitted with ``behavior=``.
        eye_position : array-like of shape (n_samples, 2), optional
            Needed exactly when the model was fitted with ``eye_position=``.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_neurons)
        """
        distribution = self.predict_distribution(X, offset, behavior, eye_position)
        return self._shape_like_y(distribution.sample(random_state))

    def __setstate__(self, state):
        if "_input_shape" in state:  # pickled before sample_shape_ was public
            state["sample_shape_"] = tuple(state.pop("_input_shape"))
        super().__setstate__(state)
        # a model fitted on a GPU and unpickled where there is none (or not
        # that GPU number) predicts on the CPU (or the current GPU); the net
        # maps the module's tensors there itself
        device = getattr(self, "device_", None)
        if device is not None:
            self.device_ = available_device(device)

    @property
    def history_(self):
        """Training curve: skorch's ``History`` of the last fit."""
        check_is_fitted(self)
        return self.net_.history

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        # score() is a log-likelihood in nats (usually negative), not an R^2
        tags.regressor_tags.poor_score = True
        try:
            family = get_family(self.family)
        except ValueError:
            return tags
        tags.target_tags.positive_only = family.non_negative
        return tags
