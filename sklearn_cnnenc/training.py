"""Training machinery: the skorch net, a zero-copy data path, validation splits.

Every estimator trains an :class:`~sklearn_cnnenc.nn.EncodingModule` with one
:class:`EncoderNet`, a :class:`skorch.NeuralNet` subclass that changes skorch's
behaviour only through its documented extension points:

* ``get_loss``: the family's negative log-likelihood plus, while training,
  the module's penalties (validation loss is the plain held-out NLL, so early
  stopping watches held-out log-likelihood);
* ``get_dataset`` / ``iterator_*``: the data are tensors on the target device,
  converted once; a batch is a slice (or, when shuffling, an index gather) of
  them: no per-sample ``Dataset.__getitem__`` and no DataLoader collation,
  and a validation split makes views or index subsets, never copies;
* ``run_single_epoch`` / ``train_step`` / ``_set_training``: batch losses
  stay on the device and reach the history in one transfer per epoch
  (skorch calls ``.item()`` per batch, which stalls a GPU every step);
  callbacks are not notified per batch unless one of them has batch hooks
  (then skorch's own loop runs; a callback that only reads validation
  batches, such as :class:`ValidationCorrelation`, says so with
  ``listens_to_training_batches = False`` and leaves the training pass
  alone); modules switch between training and
  evaluation mode only when the mode changes, not at every batch. The
  history is the one skorch would have written;
* ``train_step``: with a *separable* full-batch optimizer
  (:class:`~sklearn_cnnenc._solvers.BatchedLBFGS`, ``BatchedFISTA``) the
  closure returns one objective per neuron, so a population is solved as a
  batch of independent problems.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.callbacks import LRScheduler as _SkorchLRScheduler
from skorch.dataset import unpack_data
from skorch.exceptions import DeviceWarning
from torch import nn

from .distributions import Family
from .links import Link

__all__ = [
    "available_device",
    "TensorDataset",
    "TensorBatchIterator",
    "ValidationSplit",
    "NegativeLogLikelihood",
    "EncoderNet",
    "LRScheduler",
    "DivergenceCheck",
    "EpochProgress",
    "average_members",
    "EnsembleValidationLoss",
    "ValidationCorrelation",
]


# stands in the pickle for the ``module`` argument when it is ``module_`` itself
_FITTED_MODULE = "<EncoderNet.module_>"


def available_device(device: str | torch.device) -> torch.device:
    """Where a model saved on ``device`` runs on this machine.

    ``device`` itself if it exists here; the CPU where there is no CUDA; the
    current GPU where CUDA exists but not the saved GPU number (a model
    fitted on ``"cuda:7"`` of a large machine, loaded on a one-GPU one).

    Parameters
    ----------
    device : str or torch.device

    Returns
    -------
    device : torch.device

    Examples
    --------
    >>> from sklearn_cnnenc.training import available_device
    >>> available_device("cpu")
    device(type='cpu')
    """
    device = torch.device(device)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        return torch.device("cuda", torch.cuda.current_device())
    return device


class LRScheduler(_SkorchLRScheduler):
    """skorch's ``LRScheduler`` that pickles without its live scheduler.

    The torch scheduler holds the optimizer, whose state lives on the
    training device; skorch pickles the optimizer device-independently
    itself, but a second copy reachable from a callback would make a model
    trained on a GPU impossible to unpickle on a CPU-only machine. The
    scheduler is rebuilt at the start of every training anyway.

    Examples
    --------
    >>> import pickle
    >>> from torch.optim.lr_scheduler import ReduceLROnPlateau
    >>> from sklearn_cnnenc.training import LRScheduler
    >>> callback = LRScheduler(ReduceLROnPlateau, monitor="valid_loss")
    >>> pickle.loads(pickle.dumps(callback)).monitor
    'valid_loss'
    """

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("lr_scheduler_", None)
        return state


class DivergenceCheck(Callback):
    """Warn, and stop training, when the training loss diverges.

    Training diverged when an epoch's training loss is not finite, or
    exceeds the loss of the initial model (the first training batch, scored
    before any update) by more than ``tolerance`` times its magnitude (at
    least 1): a learning rate that is far too large, typically. A
    :class:`~sklearn.exceptions.ConvergenceWarning` names the epoch and the
    losses; with ``stop=True`` training ends there, as early stopping would.

    Parameters
    ----------
    tolerance : float, default=10.0
        How many times the initial loss's magnitude the loss may grow by.
    stop : bool, default=True
        End training at the first diverged epoch (else only warn, once).

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sklearn_cnnenc import CNNEncoder
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.random((64, 1, 10, 10)), rng.poisson(1.0, (64, 2)).astype(float)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     model = CNNEncoder(lr=1e3, max_epochs=5, channels=4, kernel_size=(5, 3),
    ...                        device="cpu", random_state=0).fit(X, y)
    >>> any("diverged" in str(w.message) for w in caught)
    True
    """

    def __init__(self, tolerance: float = 10.0, stop: bool = True):
        self.tolerance = tolerance
        self.stop = stop

    def initialize(self):
        self.warned_ = False
        return self

    def on_epoch_end(self, net, **kwargs):
        history = net.history
        if self.warned_ or not len(history) or "train_loss" not in history[-1]:
            return
        loss = float(history[-1, "train_loss"])
        batches = history[0, "batches"]
        initial = next((float(b["train_loss"]) for b in batches if "train_loss" in b), np.nan)
        limit = initial + self.tolerance * max(abs(initial), 1.0)
        if np.isfinite(loss) and not (np.isfinite(limit) and loss > limit):
            return
        self.warned_ = True
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(
            f"Training diverged at epoch {len(history)}: training loss {loss:.4g} against "
            f"{initial:.4g} for the initial model. Lower the learning rate (lr)"
            + ("; training stopped." if self.stop else "."),
            ConvergenceWarning,
            stacklevel=2,
        )
        if self.stop:
            raise KeyboardInterrupt  # how skorch callbacks end training (as EarlyStopping)


def average_members(eta: torch.Tensor, n_neurons: int) -> torch.Tensor:
    """The members' average of an ensemble's linear predictor, ``(n_samples, n_neurons)``.

    Column ``r * n_neurons + j`` of ``eta`` is member ``r``'s neuron ``j``
    (see :class:`~sklearn_cnnenc.nn.ensemble.PredictorEnsemble`); an ``eta``
    with one column per neuron is returned as it is.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.training import average_members
    >>> average_members(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), n_neurons=2)
    tensor([[2., 3.]])
    """
    if eta.shape[1] == n_neurons:
        return eta
    return eta.reshape(len(eta), -1, n_neurons).mean(dim=1)


class _ValidationPassScore(Callback):
    """A score of every epoch computed from the validation pass's own predictions.

    A subclass turns one validation batch into a tensor of sums
    (:meth:`batch_sums`, given the members' average linear predictor of an
    ensemble), which are added up on the device over the pass, and the sums
    of the pass into the epoch's score (:meth:`score`), recorded in the
    history under ``key``. No second pass over the data, and one transfer
    per epoch.
    """

    key: str
    # read by EncoderNet: training batches need no per-batch notification
    listens_to_training_batches = False

    def on_epoch_begin(self, net, **kwargs):
        self.sums_ = None

    @torch.no_grad()  # (skorch notifies outside the validation step's no_grad)
    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if training or y_pred is None:
            return
        X, y = unpack_data(batch)
        sample_weight = X.get("sample_weight") if isinstance(X, Mapping) else None
        eta = average_members(y_pred, y.shape[1])
        sums = self.batch_sums(net, eta, y, sample_weight)
        self.sums_ = sums if self.sums_ is None else self.sums_ + sums

    def on_epoch_end(self, net, **kwargs):
        if self.sums_ is None:
            return  # no validation pass
        # no tensor is kept past the epoch (it may be on a GPU)
        sums, self.sums_ = self.sums_.cpu(), None
        net.history.record(self.key, self.score(sums))

    def batch_sums(self, net, eta, y, sample_weight) -> torch.Tensor:
        raise NotImplementedError

    def score(self, sums: torch.Tensor) -> float:
        raise NotImplementedError


class EnsembleValidationLoss(_ValidationPassScore):
    """Record the held-out loss of an ensemble's average, ``valid_ensemble_loss``.

    While an ensemble trains, skorch's ``valid_loss`` is the sum of every
    member's held-out negative log-likelihood, each member judged on its
    own. The fitted ensemble predicts through the average of the members'
    linear predictors, which overfits later than any one member (averaging
    removes much of their variance), so early stopping on ``valid_loss``
    ends training too soon. This callback scores the average itself: the
    held-out loss of the net's criterion (with the members' mean
    dispersion), summed over neurons and averaged over samples, from the
    predictions of the validation pass (no second pass over the data). For
    a net that is not an ensemble it equals ``valid_loss``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc import CNNEncoder
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 1, 8, 8))
    >>> y = rng.poisson(np.exp(0.5 * X[:, 0, 4, 4]))[:, None].astype(float)
    >>> model = CNNEncoder(n_layers=1, channels=4, max_epochs=3, device="cpu",
    ...                    random_state=0).fit(X, y)
    >>> model.n_ensemble_, "valid_ensemble_loss" in model.net_.history[-1]
    (5, True)
    """

    key = "valid_ensemble_loss"

    def batch_sums(self, net, eta, y, sample_weight) -> torch.Tensor:
        dispersion = net.module_.raw_dispersion
        if dispersion is not None and len(dispersion) != y.shape[1]:
            dispersion = dispersion.reshape(-1, y.shape[1]).mean(dim=0)
        loss = net.criterion_(eta, y, dispersion, sample_weight=sample_weight).sum().double()
        return torch.stack([loss * len(y), loss.new_tensor(len(y))])

    def score(self, sums: torch.Tensor) -> float:
        total, n_samples = sums.tolist()
        return total / n_samples


class ValidationCorrelation(_ValidationPassScore):
    """Record every epoch's validation correlation, ``valid_corr``, for early stopping.

    ``valid_corr`` is the mean over neurons of the Pearson correlation
    between the predicted mean response (the link's inverse of the linear
    predictor) and the held-out responses, computed from the predictions of
    the validation pass itself (no second pass over the data). Sample
    weights weight the correlation; NaN responses (``missing_responses=
    "mask"``) are left out of their neuron's. When the linear predictor has
    ``R`` times as many columns as there are neurons (an ensemble of ``R``
    members, column ``r * n_neurons + j`` being member ``r``'s neuron
    ``j``), the members' linear predictors are averaged first, as the
    fitted ensemble predicts.

    A neuron whose held-out responses do not vary cannot be judged and is
    left out of the mean; a constant prediction of varying responses counts
    as a correlation of 0 (it predicts nothing). When no neuron's held-out
    responses vary, ``valid_corr`` is NaN, which never counts as an
    improvement, and a ``UserWarning`` says so once per training.

    ``CNNEncoder(early_stopping_metric="correlation")`` stops on it, for
    models compared by correlation: it ignores the scale and offset of the
    prediction, so the epoch it picks can be worse by likelihood.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc import CNNEncoder
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 1, 8, 8))
    >>> y = rng.poisson(np.exp(0.5 * X[:, 0, 4, 4]))[:, None].astype(float)
    >>> model = CNNEncoder(n_layers=1, channels=4, max_epochs=3, device="cpu",
    ...                    early_stopping_metric="correlation", random_state=0).fit(X, y)
    >>> -1 <= model.net_.history[-1, "valid_corr"] <= 1
    True
    """

    key = "valid_corr"

    def on_train_begin(self, net, **kwargs):
        self.warned_ = False

    def batch_sums(self, net, eta, y, sample_weight) -> torch.Tensor:
        mean = net.module_.link.inverse(eta).double()
        y = y.double()
        if sample_weight is None:
            weight = torch.ones_like(y)
        else:
            weight = sample_weight.double()[:, None].expand_as(y)
        observed = ~torch.isnan(y)
        weight = torch.where(observed, weight, 0.0)
        y = torch.where(observed, y, 0.0)
        mean = torch.where(observed, mean, 0.0)
        return torch.stack([
            weight,
            weight * mean,
            weight * y,
            weight * mean * mean,
            weight * y * y,
            weight * mean * y,
        ]).sum(dim=1)

    def score(self, sums: torch.Tensor) -> float:
        score = self.correlation(sums)
        if np.isnan(score) and not self.warned_:
            self.warned_ = True
            warnings.warn(
                "Every neuron's held-out responses are constant, so the validation "
                "correlation cannot rank the epochs (early stopping then ends training "
                "after `patience` epochs). Pass early_stopping_metric='log_likelihood', "
                "a larger validation_fraction, or early_stopping=False.",
                UserWarning,
                stacklevel=2,
            )
        return score

    @staticmethod
    def correlation(moments: torch.Tensor) -> float:
        """Mean correlation over the neurons that can be judged, from weighted sums.

        ``moments`` has the rows ``sum w``, ``sum w m``, ``sum w y``,
        ``sum w m^2``, ``sum w y^2`` and ``sum w m y`` per neuron (``m`` the
        predicted mean, ``y`` the response). NaN where no neuron's responses
        vary.
        """
        total, sum_m, sum_y, sum_mm, sum_yy, sum_my = moments.cpu().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_m, mean_y = sum_m / total, sum_y / total
            var_m = sum_mm / total - mean_m**2
            var_y = sum_yy / total - mean_y**2
            cov = sum_my / total - mean_m * mean_y
            # variances within rounding of zero are zero (one-pass moments)
            varies_y = (total > 0) & (var_y > 1e-12 * sum_yy / total)
            varies_m = var_m > 1e-12 * sum_mm / total
            r = np.where(varies_m, cov / np.sqrt(var_m * var_y), 0.0)
        if not varies_y.any():
            return float("nan")
        return float(np.clip(r[varies_y], -1.0, 1.0).mean())


class EpochProgress(Callback):
    """One self-overwriting line per epoch on stderr, only when it is a terminal.

    Long fits are otherwise silent: the line shows the epoch, the training
    (and validation) loss and the elapsed time. Nothing is written when
    stderr is not a TTY (files, pipes, tests, worker processes), nor when
    the net prints its own table (``verbose > 0``).

    Examples
    --------
    >>> from sklearn_cnnenc.training import EpochProgress
    >>> EpochProgress().initialize().active_
    False
    """

    def initialize(self):
        stream = sys.stderr
        self.active_ = bool(getattr(stream, "isatty", lambda: False)())
        self.start_ = time.perf_counter()
        return self

    def on_train_begin(self, net, **kwargs):
        self.active_ = self.active_ and not getattr(net, "verbose", 0)
        self.start_ = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        if not self.active_:
            return
        row = net.history[-1]
        line = f"\r  epoch {row['epoch']}/{net.max_epochs}  train loss {row['train_loss']:.4g}"
        if "valid_loss" in row:
            line += f"  valid loss {row['valid_loss']:.4g}"
        if "valid_corr" in row:
            line += f"  valid corr {row['valid_corr']:.3f}"
        sys.stderr.write(f"{line}  ({time.perf_counter() - self.start_:.0f} s)   ")
        sys.stderr.flush()

    def on_train_end(self, net, **kwargs):
        if self.active_:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()


class TensorDataset(torch.utils.data.Dataset):
    """Inputs and responses held as tensors, indexed without copying.

    A subset made with an index tensor (a random validation split) keeps a
    reference to the full tensors plus the index, and gathers samples only
    batch by batch, so splitting never copies the data; a subset made with a
    slice (a blocked split) holds views.

    Parameters
    ----------
    X : tensor or dict of str to tensor
        Inputs; a dict maps the module's ``forward`` keyword arguments (and
        the reserved key ``"sample_weight"``) to tensors of equal length.
    y : tensor or None
        Responses, ``(n_samples, n_outputs)``.
    indices : tensor of int64, optional
        Positions of this dataset's samples in ``X`` and ``y``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.training import TensorDataset
    >>> data = TensorDataset({"X": torch.arange(10.0)[:, None]}, torch.zeros(10, 2))
    >>> part = data.subset(torch.tensor([7, 2]))
    >>> len(part), part.take(slice(None))[0]["X"].ravel().tolist()
    (2, [7.0, 2.0])
    """

    def __init__(
        self,
        X: torch.Tensor | Mapping[str, torch.Tensor],
        y=None,
        indices: torch.Tensor | None = None,
    ) -> None:
        self._X = dict(X) if isinstance(X, Mapping) else {"X": X}
        self._y = y
        lengths = {len(value) for value in self._X.values()}
        if y is not None:
            lengths.add(len(y))
        if len(lengths) != 1:
            raise ValueError(f"Inputs and responses have inconsistent lengths {sorted(lengths)}.")
        self.indices = indices
        self._length = lengths.pop() if indices is None else len(indices)

    @property
    def X(self) -> dict:
        """The inputs of this dataset's samples (gathered if it is an index subset)."""
        return self.take(slice(None))[0]

    @property
    def y(self):
        """The responses of this dataset's samples (gathered if it is an index subset)."""
        return self.take(slice(None))[1]

    @property
    def device(self) -> torch.device:
        return next(iter(self._X.values())).device

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        return self.take(index)

    def take(self, index: torch.Tensor | slice):
        """Return the batch ``(X, y)`` at ``index`` (a slice of a plain dataset gives views)."""
        if self.indices is not None:
            index = self.indices[index]
        return self.take_stored(index)

    def weight_scale(self) -> torch.Tensor | None:
        """Factor that scales this dataset's sample weights to mean 1 (None without weights).

        One where all of its weights are zero (their losses are zero anyway).
        """
        weight = self._X.get("sample_weight")
        if weight is None:
            return None
        if self.indices is not None:
            weight = weight[self.indices]
        total = weight.sum()
        # no .item(): a device synchronisation per epoch is not worth it
        return torch.where(total > 0, len(weight) / total, torch.ones_like(total))

    def take_stored(self, index: torch.Tensor | slice):
        """The samples at positions ``index`` of the stored tensors (``indices`` ignored)."""
        X = {key: value[index] for key, value in self._X.items()}
        y = None if self._y is None else self._y[index]
        return X, y

    def subset(self, index: torch.Tensor | slice) -> TensorDataset:
        """A dataset of the samples at ``index``, sharing this one's tensors."""
        if isinstance(index, slice) and self.indices is None:
            X, y = self.take(index)
            return TensorDataset(X, y)
        if self.indices is not None:
            index = self.indices[index]
        elif isinstance(index, slice):
            index = torch.arange(self._length, device=self.device)[index]
        return TensorDataset(self._X, self._y, indices=index)


class TensorBatchIterator:
    """Mini-batches of a :class:`TensorDataset`: slices, or gathers of a permutation.

    Parameters
    ----------
    dataset : TensorDataset
    batch_size : int, default=128
        ``-1`` or a size at least ``len(dataset)`` yields the full batch. A
        last batch of a single sample joins the one before it (BatchNorm
        cannot normalise a single sample, and a one-sample step is noise).
    shuffle : bool, default=False
        Draw a new permutation every pass (one gather per batch); a pass that
        is a single batch is yielded unshuffled, as a view.
    generator : torch.Generator, optional
        Source of the permutations, for reproducible shuffling.

    Notes
    -----
    Sample weights (the input ``"sample_weight"``) are scaled to mean 1 over
    the dataset iterated (a training or validation part), which is what
    :class:`NegativeLogLikelihood` expects: a batch's loss is then an
    unbiased estimate of the part's weighted mean NLL, and the mean over a
    pass is exactly that weighted mean.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.training import TensorBatchIterator, TensorDataset
    >>> data = TensorDataset({"X": torch.arange(10.0)[:, None]}, torch.zeros(10, 1))
    >>> [len(y) for X, y in TensorBatchIterator(data, batch_size=4)]
    [4, 4, 2]
    >>> [len(y) for X, y in TensorBatchIterator(data, batch_size=3)]
    [3, 3, 4]
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int = 128,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.dataset = dataset
        n_samples = len(dataset)
        self.batch_size = n_samples if batch_size == -1 else max(1, min(batch_size, n_samples))
        self.shuffle = shuffle
        self.generator = generator
        self._weight_scale = dataset.weight_scale()

    def _bounds(self) -> list[int]:
        n_samples = len(self.dataset)
        bounds = list(range(0, n_samples, self.batch_size)) + [n_samples]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
            del bounds[-2]
        return bounds

    def __len__(self) -> int:
        return len(self._bounds()) - 1

    def __iter__(self) -> Iterator:
        if self._weight_scale is None:
            yield from self._batches()
            return
        for X, y in self._batches():
            yield {**X, "sample_weight": X["sample_weight"] * self._weight_scale}, y

    def _permutation(self, n_samples: int) -> torch.Tensor:
        """The order of one shuffled pass (positions in the dataset), drawn on the CPU."""
        return torch.randperm(n_samples, generator=self.generator)

    def _batches(self) -> Iterator:
        n_samples = len(self.dataset)
        bounds = self._bounds()
        if self.shuffle and len(bounds) > 2:
            # the permutation is drawn on the CPU (so a CPU generator works for
            # any device) and moved once per pass; a single (full) batch is not
            # shuffled: the loss is a mean, and the gather would copy the data
            order = self._permutation(n_samples).to(self.dataset.device)
            if self.dataset.indices is not None:
                # compose with the subset's indices once per pass, not per batch
                order = self.dataset.indices[order]
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
                yield self.dataset.take_stored(order[start:stop])
        else:
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
                yield self.dataset.take(slice(start, stop))


class ValidationSplit:
    """Hold out part of the training data for early stopping (a skorch ``train_split``).

    Neither side is a copy: the blocked split gives views, the random split
    index subsets (see :class:`TensorDataset`).

    Parameters
    ----------
    fraction : float
        Fraction of samples held out, in (0, 1).
    method : {"blocked", "random"}, default="blocked"
        ``"blocked"`` holds out the *last* contiguous block of samples, the
        right choice for time series where neighbouring bins are correlated
        (a random split would leak them across the split); ``"random"`` holds
        out a random subset (independent trials or images).
    random_state : int, optional
        Seed of the random split.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.training import TensorDataset, ValidationSplit
    >>> data = TensorDataset({"X": torch.arange(10.0)[:, None]}, torch.zeros(10, 1))
    >>> train, valid = ValidationSplit(0.2)(data)
    >>> valid.X["X"].ravel().tolist()
    [8.0, 9.0]
    """

    def __init__(self, fraction: float, method: str = "blocked", random_state=None) -> None:
        self.fraction = fraction
        self.method = method
        self.random_state = random_state

    def n_valid(self, n_samples: int) -> int:
        """Number of held-out samples out of ``n_samples``."""
        return int(np.ceil(self.fraction * n_samples))

    def check(self, n_samples: int) -> None:
        """Raise ``ValueError`` unless both sides of the split get a sample."""
        n_valid = self.n_valid(n_samples)
        if n_valid < 1 or n_samples - n_valid < 1:
            raise ValueError(
                f"Cannot hold out a validation fraction of {self.fraction} from "
                f"{n_samples} sample(s): each side needs at least one sample."
            )

    def __call__(self, dataset: TensorDataset, y=None, groups=None):
        n_samples = len(dataset)
        self.check(n_samples)
        n_train = n_samples - self.n_valid(n_samples)
        if self.method == "blocked":
            return dataset.subset(slice(0, n_train)), dataset.subset(slice(n_train, None))
        if self.method != "random":
            raise ValueError(
                f"Unknown validation split {self.method!r}; use 'blocked' or 'random'."
            )
        rng = np.random.default_rng(self.random_state)
        order = torch.as_tensor(rng.permutation(n_samples), device=dataset.device)
        return dataset.subset(order[:n_train]), dataset.subset(order[n_train:])

    def __repr__(self) -> str:
        return f"ValidationSplit(fraction={self.fraction}, method={self.method!r})"


class NegativeLogLikelihood(nn.Module):
    """Per-neuron (weighted) mean negative log-likelihood of a family.

    Uses the family's ``training_loss`` (the NLL itself, except for the
    Gaussian, whose mean is fitted by least squares).

    Sample weights must have mean 1 over the data the batch is drawn from
    (:class:`TensorBatchIterator` scales them so); the loss of a batch is
    ``sum_i w_i nll_i / batch_size``. Over the full data this is the
    weighted mean ``sum_i w_i nll_i / sum_i w_i``; over a mini-batch it is
    an unbiased estimate of it, and a batch whose weights are all zero
    (possible in a shuffled pass, or a validation part of zero weight)
    contributes zero instead of ``0 / 0``.

    ``eta`` may have ``R`` times as many columns as ``y`` (random restarts
    stacked as copies of the neurons, see
    :class:`~sklearn_cnnenc.nn.EncodingModule`): column ``r * n_neurons + j``
    is then scored against neuron ``j``'s responses, broadcast, not tiled.

    With ``mask_missing=True``, NaN responses (neurons not recorded in a
    sample, e.g. in another session) drop out: each neuron's loss is
    ``sum_i w_i m_ij nll_ij / sum_i m_ij`` over the batch, ``m_ij = 1``
    where ``y_ij`` was observed, i.e. the mean NLL over the neuron's own
    observed entries (zero for a neuron with none in the batch). The mask is
    computed per batch from the NaNs (no stored mask).

    Parameters
    ----------
    family : Family
    link : Link
    mask_missing : bool, default=False
        Leave NaN responses out of the loss (else they make it NaN).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.distributions import get_family
    >>> from sklearn_cnnenc.links import get_link
    >>> from sklearn_cnnenc.training import NegativeLogLikelihood
    >>> loss = NegativeLogLikelihood(get_family("poisson"), get_link("exp"))
    >>> loss(torch.zeros(4, 2), torch.zeros(4, 2))
    tensor([1., 1.])
    >>> masked = NegativeLogLikelihood(get_family("poisson"), get_link("exp"), mask_missing=True)
    >>> masked(torch.zeros(2, 2), torch.tensor([[0.0, float("nan")], [0.0, float("nan")]]))
    tensor([1., 0.])
    """

    def __init__(self, family: Family, link: Link, mask_missing: bool = False) -> None:
        super().__init__()
        self.family = family
        self.link = link
        self.mask_missing = mask_missing

    def forward(
        self,
        eta: torch.Tensor,
        y: torch.Tensor,
        raw_dispersion: torch.Tensor | None = None,
        sample_weight: torch.Tensor | None = None,
        log_normalizer: torch.Tensor | None = None,
    ) -> torch.Tensor:
        dispersion = None
        if raw_dispersion is not None:
            dispersion = self.family.dispersion_from_raw(raw_dispersion)
        n_samples, n_problems = eta.shape
        n_neurons = y.shape[1]
        observed = None
        if self.mask_missing:
            observed = ~torch.isnan(y)
            # zeros, not NaN, in the masked entries: NaN would reach the gradient
            y = torch.where(observed, y, torch.zeros((), dtype=y.dtype, device=y.device))
            if log_normalizer is not None:
                log_normalizer = torch.where(observed, log_normalizer, 0.0)
        if n_problems != n_neurons:
            if n_problems % n_neurons:
                raise ValueError(
                    f"The linear predictor has {n_problems} columns, not a multiple of "
                    f"the {n_neurons} response columns."
                )
            # (n, R, K) views broadcast against the responses of the K neurons
            eta = eta.reshape(n_samples, -1, n_neurons)
            y = y.unsqueeze(1)
            if dispersion is not None:
                dispersion = dispersion.reshape(-1, n_neurons)
            if log_normalizer is not None:
                log_normalizer = log_normalizer.unsqueeze(1)
        nll = self.family.training_loss(y, eta, self.link, dispersion, log_normalizer)
        if observed is not None:
            mask = observed if n_problems == n_neurons else observed.unsqueeze(1)
            nll = torch.where(mask, nll, 0.0)
        nll = nll.reshape(n_samples, n_problems)
        if observed is None:
            if sample_weight is None:
                return nll.mean(dim=0)
            return (sample_weight @ nll) / len(nll)
        count = observed.sum(dim=0).clamp(min=1).to(nll.dtype).repeat(n_problems // n_neurons)
        total = nll.sum(dim=0) if sample_weight is None else sample_weight @ nll
        return total / count


class EncoderNet(NeuralNet):
    """The skorch net that trains every encoding model of this library.

    A :class:`skorch.NeuralNet` whose criterion is a family's negative
    log-likelihood (:class:`NegativeLogLikelihood`). The training loss is
    the sum over neurons of each neuron's mean NLL plus the module's
    ``regularizer()``; the validation loss is the held-out NLL alone. With a
    separable full-batch optimizer the closure returns one objective per
    neuron (see :meth:`get_loss_per_output`).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.distributions import get_family
    >>> from sklearn_cnnenc.links import get_link
    >>> from sklearn_cnnenc.nn import EncodingModule, LinearPredictor
    >>> from sklearn_cnnenc.training import EncoderNet, NegativeLogLikelihood
    >>> link = get_link("exp")
    >>> net = EncoderNet(
    ...     EncodingModule(LinearPredictor(2, 1), link, n_outputs=1),
    ...     criterion=NegativeLogLikelihood,
    ...     criterion__family=get_family("poisson"), criterion__link=link,
    ...     optimizer=torch.optim.Adam, lr=0.1, max_epochs=5, verbose=0,
    ... )
    >>> X = {"X": torch.randn(50, 2)}
    >>> y = torch.poisson(torch.full((50, 1), 2.0))
    >>> net = net.fit(X, y)
    >>> len(net.history)
    5
    """

    def __init__(
        self,
        module,
        criterion=NegativeLogLikelihood,
        *,
        iterator_train=TensorBatchIterator,
        iterator_valid=TensorBatchIterator,
        dataset=TensorDataset,
        train_split=None,
        **kwargs,
    ) -> None:
        super().__init__(
            module,
            criterion,
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            dataset=dataset,
            train_split=train_split,
            **kwargs,
        )

    def _live_batch_callbacks(self, training: bool) -> bool:
        """Whether a callback does something per batch (then skorch's own loop runs).

        A callback with ``listens_to_training_batches = False`` counts for
        the validation pass only.
        """
        for _, callback in self.callbacks_:
            if isinstance(callback, _SkorchLRScheduler) and callback.step_every != "batch":
                continue
            if training and not getattr(callback, "listens_to_training_batches", True):
                continue
            kind = type(callback)
            if (
                kind.on_batch_begin is not Callback.on_batch_begin
                or kind.on_batch_end is not Callback.on_batch_end
                or (training and kind.on_grad_computed is not Callback.on_grad_computed)
            ):
                return True
        return False

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        self.batch_hooks_ = self._live_batch_callbacks(training)
        if self.batch_hooks_:
            super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
            return
        losses, sizes = [], []
        for batch in iterator:
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"].detach())
            sizes.append(len(batch[1]))
        # one device-to-host transfer per epoch instead of one per batch
        values = torch.stack(losses).cpu().tolist() if losses else []
        for loss, size in zip(values, sizes, strict=True):
            self.history.new_batch()
            self.history.record_batch(prefix + "_loss", loss)
            self.history.record_batch(prefix + "_batch_size", size)
        self.history.record(prefix + "_batch_count", len(values))

    def train_step(self, batch, **fit_params):
        if getattr(self.optimizer_, "separable", False):
            return self._separable_train_step(batch, **fit_params)
        if getattr(self, "batch_hooks_", True):
            return super().train_step(batch, **fit_params)
        # skorch's train_step without the per-batch on_grad_computed
        # notification, which no callback of this net listens to
        if not isinstance(self.optimizer_, torch.optim.LBFGS):
            # optimizers that take one step per batch need no closure
            self._zero_grad_optimizer()
            step = self.train_step_single(batch, **fit_params)
            self._step_optimizer(None)
            return step
        accumulator = self.get_train_step_accumulator()

        def step_fn():
            self._zero_grad_optimizer()
            step = self.train_step_single(batch, **fit_params)
            accumulator.store_step(step)
            return step["loss"]

        self._step_optimizer(step_fn)
        return accumulator.get_step()

    def _set_training(self, training=True):
        # train()/eval() walk every submodule; skorch calls it for every batch,
        # but the mode only changes between the training and validation passes
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and module.training != training:
                module.train(training)

    def __getstate__(self):
        state = super().__getstate__()
        # The module given to __init__ *is* ``module_``. skorch pickles
        # ``module_`` so that it loads on any device, but the ``module``
        # reference would be pickled as it is: a net trained on a GPU could not
        # be unpickled where there is none.
        if "module_" in self.__dict__ and state.get("module") is self.module_:
            state["module"] = _FITTED_MODULE
        return state

    def __setstate__(self, state):
        device = state.get("device")
        if device is not None and torch.cuda.is_available():
            # skorch maps a CUDA net to the CPU (with a warning) where there is
            # no CUDA, but would fail on a GPU number this machine lacks
            available = available_device(device)
            if available != torch.device(device):
                warnings.warn(
                    f"The net was saved on {device}, which does not exist here; it is "
                    f"loaded on {available} instead.",
                    DeviceWarning,
                    stacklevel=2,
                )
                state["device"] = available
        super().__setstate__(state)
        if isinstance(self.__dict__.get("module"), str) and self.module == _FITTED_MODULE:
            self.__dict__["module"] = self.module_

    def get_dataset(self, X, y=None):
        if isinstance(X, TensorDataset):
            return X
        from .data import make_dataset  # streams inputs held on disk

        if isinstance(X, Mapping):
            module = getattr(self, "module_", None)
            dtype = torch.float32 if module is None else next(module.parameters()).dtype
            return make_dataset(X, y, self.device, dtype)
        return TensorDataset(X, y)

    def infer(self, x, **fit_params):
        # sample weights travel with the inputs but are the loss's business
        inputs = {key: value for key, value in x.items() if key != "sample_weight"}
        return self.module_(**inputs, **fit_params)

    def _nll_per_output(self, y_pred, y_true, X, log_normalizer=None) -> torch.Tensor:
        sample_weight = X.get("sample_weight") if isinstance(X, Mapping) else None
        return self.criterion_(
            y_pred,
            y_true,
            self.module_.raw_dispersion,
            sample_weight=sample_weight,
            log_normalizer=log_normalizer,
        )

    def get_loss_per_output(
        self, y_pred, y_true, X=None, training=False, log_normalizer=None
    ) -> torch.Tensor:
        """One objective per neuron: mean NLL (plus, in training, the penalty).

        Requires a penalty that is separable over neurons (a vector of shape
        ``(n_outputs,)`` or a scalar zero), which holds for GLM and LN models.
        ``log_normalizer`` is the family's ``y``-only term, computed once by
        a full-batch solver instead of at every evaluation.
        """
        loss = self._nll_per_output(y_pred, y_true, X, log_normalizer)
        if training:
            loss = loss + self.module_.regularizer()
        return loss

    def get_loss(self, y_pred, y_true, X=None, training=False) -> torch.Tensor:
        # summed separately: a scalar penalty (a CNN's) must not broadcast
        # over the neurons
        loss = self._nll_per_output(y_pred, y_true, X).sum()
        if training:
            loss = loss + self.module_.regularizer().sum()
        return loss

    def _separable_train_step(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        # computed at the first call: an optimizer with its own structured
        # closure (PoissonGLM's) may never call this one
        normalizer: list = []

        def closure() -> torch.Tensor:
            if not normalizer:
                normalizer.append(self.criterion_.family.log_normalizer(yi))
            self.optimizer_.zero_grad()
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss_per_output(
                y_pred, yi, X=Xi, training=True, log_normalizer=normalizer[0]
            )
            loss.sum().backward()
            return loss.detach()

        objective = self.optimizer_.step(closure)
        return {"loss": objective.sum(), "y_pred": None}
