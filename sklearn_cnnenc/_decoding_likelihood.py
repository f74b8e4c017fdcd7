"""The log-likelihood of many responses under many candidate stimuli, without loops.

A decoder needs ``log p(y_i | s_k)`` for every response vector ``y_i`` and
every candidate stimulus ``s_k``. Neurons are conditionally independent given
the stimulus and every family of the library is an exponential family in its
mean with a dispersion that depends on the neuron only, so the whole matrix is
one matrix product plus two vectors:

.. math::

    \\log p(y_i \\mid s_k) = \\sum_n y_{in} A_{kn} + b_k + c(y_i)

Each family owns its ``A`` and ``b``
(:meth:`~sklearn_cnnenc.distributions.Family.candidate_terms`) and ``c(y)``
(:meth:`~sklearn_cnnenc.distributions.Family.response_term`); a family whose
log-probability is linear in other statistics of ``y`` (the zero-inflated
gamma: ``y`` and ``[y > 0]``) gives them as
:meth:`~sklearn_cnnenc.distributions.Family.response_statistics`, and ``A``
has one block of columns per statistic. This module
knows no family. The encoder is evaluated once on the candidates (``A`` and
``b``); each batch of responses then costs one GEMM. A family without such a
form (``candidate_terms`` returns None) is evaluated pair by pair with its
own negative log-likelihood, in chunks, with a warning that this is slower.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch
from sklearn import get_config

from .distributions import ResponseDistribution

__all__ = ["CandidateLikelihood", "moving_sum"]

# Temporaries of one chunk of responses stay below this size (and below
# scikit-learn's ``working_memory``): larger chunks are no faster, since the
# GEMM is already compute-bound at a few hundred rows.
_MAX_CHUNK_BYTES = 64 * 2**20


def moving_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum of each row and the ``window - 1`` rows before it (fewer at the start).

    Parameters
    ----------
    values : ndarray of shape (n_rows, n_columns)
        Overwritten by its cumulative sum when ``window > 1``.
    window : int

    Returns
    -------
    sums : ndarray of shape (n_rows, n_columns)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc._decoding_likelihood import moving_sum
    >>> moving_sum(np.arange(5.0)[:, None], 3).ravel()
    array([0., 1., 3., 6., 9.])
    """
    if window == 1:
        return values
    cumulative = np.cumsum(values, axis=0, out=values)
    sums = np.empty_like(cumulative)
    sums[:window] = cumulative[:window]
    np.subtract(cumulative[window:], cumulative[:-window], out=sums[window:])
    return sums


class CandidateLikelihood:
    """``log p(y | candidate)`` for batches of responses, from one encoder evaluation.

    Parameters
    ----------
    distribution : ResponseDistribution
        The encoder's predicted distribution for every candidate stimulus,
        with linear predictors of shape (n_candidates, n_neurons).

    Attributes
    ----------
    family : Family
    n_candidates : int
    n_neurons : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.distributions import ResponseDistribution, get_family
    >>> from sklearn_cnnenc.links import get_link
    >>> rates = np.array([[1.0, 4.0], [4.0, 1.0]])  # two candidates, two neurons
    >>> distribution = ResponseDistribution(get_family("poisson"), get_link("exp"), np.log(rates))
    >>> likelihood = CandidateLikelihood(distribution)
    >>> likelihood(np.array([[0.0, 5.0]])).round(3)
    array([[-2.856, -9.787]])
    """

    def __init__(self, distribution: ResponseDistribution) -> None:
        self.family = distribution.family
        self.n_candidates, self.n_neurons = distribution.eta.shape
        self._distribution = distribution
        self._dispersion = None
        if distribution.dispersion is not None:
            self._dispersion = np.asarray(distribution.dispersion, dtype=float)
        terms = self.family.candidate_terms(
            distribution.eta, distribution.link, self._dispersion
        )
        self._gemm = terms is not None
        if self._gemm:
            self._weights, self._candidate_term = terms
        else:
            warnings.warn(
                f"The {self.family.name!r} family defines no candidate_terms(): the decoder "
                "evaluates its log-likelihood for every response and candidate pair, "
                "which is slower than the matrix-product form.",
                UserWarning,
                stacklevel=3,
            )

    def __call__(self, Y: np.ndarray, response_term=None) -> np.ndarray:
        """Log-likelihood matrix of shape (n_responses, n_candidates) for one batch.

        ``response_term`` is :meth:`response_term` of ``Y``, when the caller
        computed it once for more rows than this batch (default: computed
        here).
        """
        missing = np.isnan(Y)
        if missing.any():
            # responses not recorded (an encoder with missing_responses="mask")
            # leave out their neurons' terms: pair by pair, exact for any family
            filled = np.where(missing, 1.0, Y)  # a valid response of every family
            log_prob = self._distribution.log_prob(filled[:, None, :])
            log_prob[np.broadcast_to(missing[:, None, :], log_prob.shape)] = 0.0
            return log_prob.sum(axis=2)
        if response_term is None:
            response_term = self.response_term(Y)
        if not self._gemm:
            # y (n, 1, N) against eta (K, N): the family's exact log-probability
            normalizer = None if response_term is None else response_term[:, None, :]
            return self._distribution.log_prob(Y[:, None, :], log_normalizer=normalizer).sum(
                axis=2
            )
        log_likelihood = self.family.response_statistics(Y) @ self._weights.T
        log_likelihood += self._candidate_term
        log_likelihood += response_term[:, None]
        return log_likelihood

    def response_term(self, Y: np.ndarray):
        """The part ``c(y)`` that depends on the responses only, one value per row.

        For families outside the GEMM form, the family's own
        :meth:`~sklearn_cnnenc.families.Family.log_normalizer` per response
        (a tensor of the shape of ``Y``, or None when it has none).
        """
        if not self._gemm:
            return self.family.log_normalizer(torch.as_tensor(Y))
        return self.family.response_term(Y, self._dispersion)

    def chunk_rows(self, n_rows: int, pairwise: bool = False) -> int:
        """Responses per chunk so that temporaries stay within the memory budget.

        ``pairwise``: the responses have missing entries (NaN), which are
        scored pair by pair.
        """
        width = self.n_candidates * (1 if self._gemm and not pairwise else self.n_neurons)
        # the matrix, its moving sum over bins (or an exp() temporary) and
        # the caller's copy of the normalised posterior
        row_bytes = 3 * 8 * max(width, 1)
        budget = min(_MAX_CHUNK_BYTES, get_config()["working_memory"] * 2**20)
        return int(max(1, min(n_rows, budget // row_bytes)))

    def iter_chunks(
        self, Y: np.ndarray, integrate_bins: int = 1
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, log_likelihood)`` over chunks of ``Y``.

        With ``integrate_bins=w`` row ``t`` holds the summed log-likelihood of
        bins ``t - w + 1 .. t`` (bins are independent given the stimulus);
        each chunk recomputes the ``w - 1`` bins before it, except their
        response term ``c(y)``, computed once for all of ``Y``.
        """
        n_rows = len(Y)
        pairwise = bool(np.isnan(Y).any())
        chunk = self.chunk_rows(n_rows, pairwise)
        # c(y) (log y! for counts) depends on the responses alone: once per
        # call, not once per chunk (nor again for the bins a window re-reads)
        response_term = None if pairwise else self.response_term(Y)
        for start in range(0, n_rows, chunk):
            stop = min(start + chunk, n_rows)
            first = max(0, start - integrate_bins + 1)
            rows = None if response_term is None else response_term[first:stop]
            log_likelihood = moving_sum(self(Y[first:stop], rows), integrate_bins)
            yield slice(start, stop), log_likelihood[start - first :]
