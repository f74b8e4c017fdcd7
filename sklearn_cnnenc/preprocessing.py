"""Temporal features for encoding models: time lags, raised-cosine bases, spike history.

All transformers here are stateless in the data (``fit`` only checks shapes),
so they never learn anything from held-out bins; what can leak across
cross-validation folds of a time series is the *lag window* itself. Use a
contiguous-block splitter with a gap of at least the window length
(:class:`~sklearn_cnnenc.model_selection.BlockedKFold`, or scikit-learn's
``TimeSeriesSplit(gap=n_lags)``) when the lagged columns include responses.

Spike history and coupling
--------------------------
A neuron's own past spikes and other neurons' past spikes enter a GLM as
lagged copies of the spike counts that **exclude the current bin**
(``TimeLagger(min_lag=1)``), so the model cannot read the response it
predicts. Put the stimulus and the spike counts side by side in ``X`` and lag
each group in a ``ColumnTransformer``::

    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn_cnnenc import PoissonGLM
    from sklearn_cnnenc.model_selection import BlockedKFold

    X = np.column_stack([stimulus, spikes])        # (n_bins, 1 + n_neurons)
    features = ColumnTransformer([
        ("stimulus", TimeLagger(n_lags=40), [0]),
        ("history", TimeLagger(n_lags=20, min_lag=1), slice(1, None)),
    ])
    model = make_pipeline(features, PoissonGLM(alpha=1e-3))
    cross_val_score(model, X, spikes[:, 0], cv=BlockedKFold(5, gap=40))

:func:`~sklearn_cnnenc.simulation.simulate` runs such a fitted model
recurrently, feeding sampled spikes back as history.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

__all__ = ["TimeLagger", "RaisedCosineBasis", "raised_cosine_basis"]


class TimeLagger(TransformerMixin, BaseEstimator):
    """Design (Hankel) matrix of the recent past of every input column.

    Row ``t`` of the output holds ``X[t - lag, c]`` for every column ``c``
    and every lag in ``lags_`` (``min_lag, ..., min_lag + n_lags - 1`` when
    causal). Columns are **lag-major**: column ``i * n_columns + c`` is lag
    ``lags_[i]`` of input column ``c``, so a filter over the output reshapes
    to ``(n_lags, n_columns)`` (the ``input_shape`` of an
    :class:`~sklearn_cnnenc.LNModel`). Bins before the start of the recording
    are zero (``padding="zero"``) or repeat the first bin (``"edge"``).

    **Lag order.** The library's one convention: a lagged design is
    lag-major with lag 0 (the current bin) first, as here; column block
    ``j`` is the stimulus ``lags_[j]`` bins before the response. Every
    estimator reads this output as it is: :class:`~sklearn_cnnenc.PoissonGLM`
    (``coef_`` in the same order), :class:`~sklearn_cnnenc.LNModel` with
    ``input_shape=(n_lags, n_columns)``, and the causal 1-D
    :class:`~sklearn_cnnenc.CNNEncoder` with ``input_type="lagged"`` and
    ``input_shape=(n_lags, n_columns)``, which turns each row into its
    causal window internally; so one design serves a model comparison and
    temporal filters of all three read lag 0 first.

    The output is written once, column by column, into a preallocated
    column-major (Fortran-ordered) array of the input's floating dtype (no
    Python loop over bins): a float32 signal gives a float32 design matrix
    that :class:`~sklearn_cnnenc.PoissonGLM` and
    :class:`~sklearn_cnnenc.LNModel` use without copying.

    Parameters
    ----------
    n_lags : int, default=10
        Number of lags per input column (the filter length in bins).
    causal : bool, default=True
        ``True``: lags ``min_lag ... min_lag + n_lags - 1`` (the past; lag 0 is
        the current bin). ``False``: a window centred on the current bin,
        lags ``(n_lags - 1) // 2`` down to ``-(n_lags // 2)``, where negative
        lags look into the future (e.g. for motor-related encoding).
    min_lag : int, default=0
        First lag of a causal window. Use ``min_lag=1`` for spike-history and
        coupling regressors, which must not include the current bin.
    padding : {"zero", "edge"}, default="zero"
        Value of bins outside the recording: zero, or the nearest recorded bin.

    Attributes
    ----------
    lags_ : ndarray of shape (n_lags,)
        The lag (in bins, positive = past) of each block of output columns.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.

    See Also
    --------
    RaisedCosineBasis : project the lags onto a smooth, low-dimensional basis.
    sklearn_cnnenc.model_selection.BlockedKFold : cross-validation without leaks.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.preprocessing import TimeLagger
    >>> TimeLagger(n_lags=3).fit_transform(np.arange(1.0, 6.0)[:, None])
    array([[1., 0., 0.],
           [2., 1., 0.],
           [3., 2., 1.],
           [4., 3., 2.],
           [5., 4., 3.]])
    >>> TimeLagger(n_lags=2, min_lag=1).fit_transform(np.arange(1.0, 4.0)[:, None])
    array([[0., 0.],
           [1., 0.],
           [2., 1.]])
    """

    _parameter_constraints: dict = {
        "n_lags": [Interval(Integral, 1, None, closed="left")],
        "causal": ["boolean"],
        "min_lag": [Interval(Integral, 0, None, closed="left")],
        "padding": [StrOptions({"zero", "edge"})],
    }

    def __init__(
        self, n_lags: int = 10, *, causal: bool = True, min_lag: int = 0, padding: str = "zero"
    ) -> None:
        self.n_lags = n_lags
        self.causal = causal
        self.min_lag = min_lag
        self.padding = padding

    def _lags(self) -> np.ndarray:
        if self.causal:
            return self.min_lag + np.arange(self.n_lags)
        if self.min_lag != 0:
            raise ValueError("min_lag applies to causal windows only; use causal=True.")
        # positive lags (the past) first, then the current bin and the future
        return (self.n_lags - 1) // 2 - np.arange(self.n_lags)

    def _check_length(self, n_samples: int) -> None:
        needed = int(np.max(np.abs(self.lags_))) + 1
        if n_samples < needed:
            raise ValueError(
                f"TimeLagger with lags up to {needed - 1} bins needs at least {needed} "
                f"samples (time bins); got {n_samples} sample(s). n_lags is larger than "
                "the recording."
            )

    def fit(self, X, y=None):
        """Check the input and record the lags.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_columns)
            Time series, one row per time bin.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True)
        self.lags_ = self._lags()
        self._check_length(X.shape[0])
        return self

    def transform(self, X):
        """Lagged copies of every column.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_columns)

        Returns
        -------
        X_lagged : ndarray of shape (n_samples, n_lags * n_columns), Fortran-ordered
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        n_samples, n_columns = X.shape
        self._check_length(n_samples)
        out = np.empty((n_samples, len(self.lags_) * n_columns), dtype=X.dtype, order="F")
        # splitting the column axis of a column-major array is a view: block i
        # is lag i of every input column
        blocks = out.reshape(n_samples, len(self.lags_), n_columns)
        for i, lag in enumerate(self.lags_):
            block = blocks[:, i, :]
            if lag >= 0:
                block[lag:] = X[: n_samples - lag]
                block[:lag] = 0.0 if self.padding == "zero" else X[:1]
            else:
                lead = -lag
                block[: n_samples - lead] = X[lead:]
                block[n_samples - lead :] = 0.0 if self.padding == "zero" else X[-1:]
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names ``"<column>_lag<k>"`` of the output columns, lag-major.

        Parameters
        ----------
        input_features : array-like of str, optional

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        return np.asarray(
            [f"{name}_lag{lag}" for lag in self.lags_ for name in names], dtype=object
        )


def raised_cosine_basis(
    n_basis: int, window: int, log_scaling: bool = True, offset: float = 1.0
) -> np.ndarray:
    """Raised-cosine bumps tiling ``window`` lags (Pillow et al. 2008).

    Bump ``j`` is ``(1 + cos(clip((u(t) - c_j) * pi / (2 d), -pi, pi))) / 2``
    over lags ``t = 0 ... window - 1``, with ``u(t) = log(t + offset)`` when
    ``log_scaling`` (narrow bumps at short lags, wide ones at long lags) and
    ``u(t) = t`` otherwise. The centres ``c_j`` are spaced ``d`` apart from
    ``u(0)`` so that the last bump reaches zero at the end of the window.
    Each bump spans four spacings, so wherever all neighbouring bumps exist
    (from the second to the second-to-last centre) they sum to 2.

    Parameters
    ----------
    n_basis : int
    window : int
        Number of lags covered.
    log_scaling : bool, default=True
    offset : float, default=1.0
        Offset of the logarithmic time axis (larger: closer to linear spacing).

    Returns
    -------
    basis : ndarray of shape (window, n_basis)

    Examples
    --------
    >>> from sklearn_cnnenc.preprocessing import raised_cosine_basis
    >>> basis = raised_cosine_basis(4, 30)
    >>> basis.shape, float(basis[0, 0])
    ((30, 4), 1.0)
    """
    for name, value in (("n_basis", n_basis), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    if log_scaling and not (isinstance(offset, Real) and np.isfinite(offset) and offset > 0):
        raise ValueError(f"offset must be a finite number > 0; got {offset!r}.")
    lags = np.arange(window, dtype=float)
    # log1p(lags / offset) = log(lags + offset) - log(offset): the same bumps, without
    # losing the lags to rounding when the offset is large (1e16 + 1 == 1e16)
    u = np.log1p(lags / offset) if log_scaling else lags
    spacing = (u[-1] - u[0]) / (n_basis + 1) if window > 1 else 1.0
    centres = u[0] + spacing * np.arange(n_basis)
    phase = (u[:, None] - centres[None, :]) * np.pi / (2 * spacing)
    return 0.5 * (1.0 + np.cos(np.clip(phase, -np.pi, np.pi)))


class RaisedCosineBasis(TransformerMixin, BaseEstimator):
    """Project lagged columns onto log-stretched raised cosines (Pillow et al. 2008).

    Takes the output of :class:`TimeLagger` (lag-major columns, ``window``
    lags per signal) and returns ``n_basis`` features per signal: a filter is
    then ``basis_ @ coef`` per signal, smooth and with fine resolution at
    short lags. :meth:`reconstruct` maps fitted coefficients back to the full
    filter in the lagged layout, for plotting.

    Parameters
    ----------
    n_basis : int, default=5
    window : int, optional
        Lags per signal; default: ``n_features`` (one lagged signal). The
        number of input columns must be a multiple of ``window``.
    log_scaling : bool, default=True
        Logarithmically stretched time axis; ``False`` gives evenly spaced bumps.
    offset : float, default=1.0
        Offset of the logarithmic time axis (larger: closer to linear).

    Attributes
    ----------
    basis_ : ndarray of shape (window, n_basis)
    window_ : int
    n_signals_ : int
        Number of lagged signals (``n_features_in_ // window_``).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.

    References
    ----------
    .. [1] Pillow, J. W. et al. (2008). Spatio-temporal correlations and visual
       signalling in a complete neuronal population. Nature 454, 995-999.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_cnnenc.preprocessing import RaisedCosineBasis, TimeLagger
    >>> features = make_pipeline(TimeLagger(n_lags=40), RaisedCosineBasis(n_basis=6))
    >>> features.fit_transform(np.random.default_rng(0).normal(size=(500, 1))).shape
    (500, 6)
    >>> features[-1].reconstruct(np.ones(6)).shape
    (40,)
    """

    _parameter_constraints: dict = {
        "n_basis": [Interval(Integral, 1, None, closed="left")],
        "window": [Interval(Integral, 1, None, closed="left"), None],
        "log_scaling": ["boolean"],
        "offset": [Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        n_basis: int = 5,
        window: int | None = None,
        *,
        log_scaling: bool = True,
        offset: float = 1.0,
    ) -> None:
        self.n_basis = n_basis
        self.window = window
        self.log_scaling = log_scaling
        self.offset = offset

    def fit(self, X, y=None):
        """Build the basis for the lag window.

        Parameters
        ----------
        X : array-like of shape (n_samples, window * n_signals)
            Lagged signals, lag-major (as :class:`TimeLagger` writes them).
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True)
        window = X.shape[1] if self.window is None else self.window
        if X.shape[1] % window:
            raise ValueError(
                f"X has {X.shape[1]} columns, not a multiple of window={window}: "
                "RaisedCosineBasis expects lag-major blocks of `window` lags per signal."
            )
        self.window_ = window
        self.n_signals_ = X.shape[1] // window
        self.basis_ = raised_cosine_basis(self.n_basis, window, self.log_scaling, self.offset)
        return self

    def transform(self, X):
        """Basis coefficients of every lagged signal.

        Parameters
        ----------
        X : array-like of shape (n_samples, window * n_signals)

        Returns
        -------
        X_basis : ndarray of shape (n_samples, n_basis * n_signals)
            Basis-major, like the input is lag-major.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        lagged = X.reshape(len(X), self.window_, self.n_signals_)
        basis = self.basis_.astype(X.dtype, copy=False)
        out = np.einsum("ntc,tb->nbc", lagged, basis, optimize=True)
        return np.asfortranarray(out.reshape(len(X), -1))

    def reconstruct(self, coef) -> np.ndarray:
        """Full filters over the lag window from basis coefficients.

        Parameters
        ----------
        coef : array-like of shape (..., n_basis * n_signals)
            E.g. a GLM's ``coef_`` fitted on this transformer's output.

        Returns
        -------
        filters : ndarray of shape (..., window * n_signals)
            Lag-major, like the input of :meth:`transform`: reshape to
            ``(..., window, n_signals)`` to plot each signal's filter.
        """
        check_is_fitted(self)
        coef = np.asarray(coef, dtype=float)
        expected = self.n_basis * self.n_signals_
        if coef.shape[-1] != expected:
            raise ValueError(
                f"coef must have {expected} values on its last axis (n_basis * n_signals); "
                f"got shape {coef.shape}."
            )
        per_signal = coef.reshape(*coef.shape[:-1], self.n_basis, self.n_signals_)
        filters = np.einsum("tb,...bc->...tc", self.basis_, per_signal)
        return filters.reshape(*coef.shape[:-1], self.window_ * self.n_signals_)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names ``"basis<j>_signal<c>"`` of the output columns.

        Parameters
        ----------
        input_features : array-like of str, optional
            Checked against the names seen in ``fit``.

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        return np.asarray(
            [f"basis{j}_signal{c}" for j in range(self.n_basis) for c in range(self.n_signals_)],
            dtype=object,
        )
