"""scikit-learn's estimator checks for every estimator of the library."""

import re

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_cnnenc import (
    BayesianDecoder,
    CNNEncoder,
    CNNEncoderCV,
    LNModel,
    PoissonGLM,
    PoissonGLMCV,
)
from sklearn_cnnenc.preprocessing import RaisedCosineBasis, TimeLagger

COUNT_MULTIOUTPUT_REASON = (
    "check_regressor_multioutput draws negative targets (make_regression) without "
    "honouring the positive_only tag, and count families reject negative responses; "
    "populations are tested in test_glm.py"
)
# scikit-learn's regressor checks draw continuous targets; a Bernoulli model
# rejects anything but {0, 1} by design.
BERNOULLI_REASON = (
    "the check fits continuous regression targets, which the Bernoulli family rejects "
    "by design (it needs binary responses); Bernoulli fits are tested in test_glm.py"
)
BERNOULLI_CHECKS_ON_CONTINUOUS_TARGETS = [
    "check_fit_score_takes_y",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_estimators_dtypes",
    "check_sample_weights_pandas_series",
    "check_sample_weights_not_an_array",
    "check_sample_weights_list",
    "check_sample_weights_shape",
    "check_sample_weights_not_overwritten",
    "check_dict_unchanged",
    "check_dtype_object",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_non_transformer_estimators_n_iter",
    "check_regressor_data_not_an_array",
    "check_regressor_multioutput",
    "check_regressors_int",
    "check_regressors_no_decision_function",
    "check_regressors_train",
    "check_sample_weight_equivalence_on_dense_data",
    "check_supervised_y_2d",
]


# With a candidate set the classes are its rows 0..K-1, whatever labels fit sees.
CANDIDATE_SET_REASON = (
    "with stimuli given, the classes are the K rows of the candidate set and labels "
    "are row indices; the check fits string labels, labels beyond K-1, or only some "
    "of the K classes and expects predict_proba to have one column per label seen. "
    "Arbitrary labels are covered by the stimuli=None configuration"
)
DECODER_CANDIDATE_SET_CHECKS = [
    "check_classifiers_classes",
    "check_classifiers_train",
    "check_dtype_object",
]
# The check fits 15 samples with 30 features: a non-convex LN model is then flat
# around its optimum, so weighted and repeated fits stop (at the default tol=1e-4
# on the gradient, or at the iteration cap) at points whose predictions differ by
# up to 2.6e-3 relative (measured; 6e-6 with tol=1e-9).
# test_nonconvex_weights_reason_states_the_measured_gap
# keeps the stated bound true for the checked configurations (NONCONVEX_LN_MODELS).
NONCONVEX_WEIGHTS_RTOL = 1e-2
NONCONVEX_WEIGHTS_REASON = (
    "a non-convex LN fit of 15 samples and 30 features is flat near its optimum: the "
    "weighted and repeated fits stop at the default tol=1e-4 (or max_iter) with predictions "
    "that agree "
    f"to rtol={NONCONVEX_WEIGHTS_RTOL:g} (measured 2.6e-3; 6e-6 with tol=1e-9), not "
    "rtol=1e-7; sample weights are tested on well-determined data in test_ln.py"
)
# A time-lag transformer maps each row to a window of *earlier* rows: its
# output depends on the order of the samples and on which samples are present.
TIME_SERIES_REASON = (
    "the output of a time-lag transformer depends on the preceding rows by design "
    "(a time series), so transforming a permuted or partial input cannot equal "
    "permuting or subsetting the transform; TimeLagger is tested in test_preprocessing.py"
)
# A CNN with early stopping holds out a random validation subset of the
# *samples*: repeating a sample puts copies on both sides of the split (and
# into different mini-batches), which doubling its weight does not.
CNN_SAMPLE_WEIGHT_REASON = (
    "with early stopping the validation split is drawn over samples, so a repeated sample "
    "can land in both the training and the validation part while a weight of 2 cannot; "
    "weighted fits are tested in test_cnn.py"
)

# A float32 matrix product (the convolutions and readouts) is computed in row
# blocks whose width depends on the CPU's vector unit; the last, partial block
# takes a different kernel, so a sample's prediction can change in its last bit
# when it moves within the batch (seen on an AVX-512 CI machine: 2.4e-7 relative
# for one sample of 20, never on this AVX2 machine). The checks demand rtol=1e-7,
# one float32 ulp; test_cnn_predictions_do_not_depend_on_sample_order_or_subset
# below asserts the invariance to a float32 round-off bound instead.
FLOAT32_BATCH_REASON = (
    "a float32 matrix product blocks the batch's rows by the CPU's vector width, so a "
    "sample's prediction can change by one float32 ulp (2.4e-7 relative, measured) when it "
    "moves within the batch, while the check demands rtol=1e-7; the invariance is "
    "asserted to a float32 round-off bound in this file"
)
FLOAT32_BATCH_CHECKS = [
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
]


def expected_failed_checks(estimator) -> dict[str, str]:
    """Checks that cannot pass for this configuration, each with its reason."""
    failures = _expected_failed_checks(estimator)
    if isinstance(estimator, (CNNEncoder, CNNEncoderCV)):
        failures.update(dict.fromkeys(FLOAT32_BATCH_CHECKS, FLOAT32_BATCH_REASON))
    return failures


def _expected_failed_checks(estimator) -> dict[str, str]:
    if isinstance(estimator, BayesianDecoder):
        if estimator.stimuli is None:
            return {}
        return dict.fromkeys(DECODER_CANDIDATE_SET_CHECKS, CANDIDATE_SET_REASON)
    if isinstance(estimator, TimeLagger):
        return {
            "check_methods_sample_order_invariance": TIME_SERIES_REASON,
            "check_methods_subset_invariance": TIME_SERIES_REASON,
        }
    if isinstance(estimator, RaisedCosineBasis):
        return {}
    if isinstance(estimator, LNModel) and estimator.nonlinearity != "identity":
        return {
            "check_regressor_multioutput": COUNT_MULTIOUTPUT_REASON,
            "check_sample_weight_equivalence_on_dense_data": NONCONVEX_WEIGHTS_REASON,
        }
    family = getattr(estimator, "family", "poisson")
    if isinstance(estimator, CNNEncoder) and estimator.early_stopping:
        failures = {"check_sample_weight_equivalence_on_dense_data": CNN_SAMPLE_WEIGHT_REASON}
        if family in ("poisson", "negative_binomial"):
            failures["check_regressor_multioutput"] = COUNT_MULTIOUTPUT_REASON
        return failures
    if family == "bernoulli":
        return dict.fromkeys(BERNOULLI_CHECKS_ON_CONTINUOUS_TARGETS, BERNOULLI_REASON)
    if family in ("poisson", "negative_binomial"):
        return {"check_regressor_multioutput": COUNT_MULTIOUTPUT_REASON}
    return {}


# A bounded max_iter: some checks fit unscaled data on which a non-convex fit
# creeps to any cap (at 200 the two took 2-3x as long as at 20); the checks
# test the API (poor_score: no fit quality is asserted), the fits are tested in
# test_ln.py. Every check that compares two fits compares deterministic ones.
NONCONVEX_LN_MODELS = [
    LNModel(n_init=2, max_iter=20),
    LNModel(n_filters=2, nonlinearity="square", n_init=2, max_iter=20),
]

ESTIMATORS = [
    PoissonGLM(),
    PoissonGLM(alpha=0.1, l1_ratio=0.5),
    # sample-weight equivalence is checked to rtol=1e-7, which needs a tight tol
    PoissonGLM(family="gaussian", tol=1e-10),
    PoissonGLM(family="negative_binomial", tol=1e-10),
    PoissonGLM(family="bernoulli"),
    PoissonGLMCV(n_alphas=3, cv=2),
    # decoders: one-hot candidates for arbitrary labels (a Poisson naive Bayes
    # through the GLM), a Gaussian encoder (responses may be negative), and a
    # candidate set of positions behind a spline basis
    BayesianDecoder(PoissonGLM()),
    BayesianDecoder(PoissonGLM(family="gaussian"), prior="uniform"),
    BayesianDecoder(
        make_pipeline(SplineTransformer(n_knots=3), PoissonGLM()),
        stimuli=np.linspace(0.0, 1.0, 3),
        integrate_bins=1,
    ),
    *NONCONVEX_LN_MODELS,
    LNModel(nonlinearity="identity", tol=1e-10),
    TimeLagger(n_lags=3),
    RaisedCosineBasis(n_basis=3),
    # scikit-learn's checks pass flat X with as few as 2 features, read as
    # one-channel time series: receptive fields of at most 2 bins keep them
    # valid (1 feature gets the documented "1 feature(s)" error). Tiny sizes
    # and 2-3 epochs keep the checks fast.
    CNNEncoder(n_layers=1, channels=4, kernel_size=1, max_epochs=3, device="cpu"),
    CNNEncoder(
        n_layers=2,
        channels=3,
        kernel_size=[2, 1],
        dilation="exponential",
        readout="gaussian",
        family="gaussian",
        max_epochs=2,
        device="cpu",
    ),
    # full-batch training on these tiny sets: weights and repeats are equivalent
    CNNEncoder(
        n_layers=2,
        channels=3,
        kernel_size=[1, 2],
        padding="same",
        readout="factorized",
        batch_norm=False,
        weight_sharing=False,
        early_stopping=False,
        n_init=2,
        max_epochs=2,
        device="cpu",
    ),
    # the small-data default: an averaged ensemble of (here) two models
    CNNEncoder(n_layers=1, channels=2, kernel_size=1, n_ensemble=2, max_epochs=2, device="cpu"),
    # successive halving over two architectures, 2 folds
    CNNEncoderCV(
        CNNEncoder(n_layers=1, channels=2, kernel_size=1, max_epochs=2, n_ensemble=1,
                   early_stopping=False, device="cpu"),
        {"channels": [2, 3]},
        cv=2,
        factor=2,
        random_state=0,
    ),
]


@pytest.fixture(autouse=True)
def one_thread_for_cnns(request):
    """The CNN checks run tiny convolutions: one intra-op thread is fastest, and on busy
    cores two OpenMP threads waiting on each other can make one call take 0.1 s."""
    estimator = getattr(request.node, "callspec", None)
    estimator = estimator.params.get("estimator") if estimator else None
    if not isinstance(estimator, (CNNEncoder, CNNEncoderCV)):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# scikit-learn's checks fit small arbitrary data (e.g. a list-of-lists copy of a
# random regression) where convergence within max_iter is not what is checked
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.slow
@pytest.mark.parametrize(
    "estimator",
    NONCONVEX_LN_MODELS,
    ids=["softplus", "square"],
)
def test_nonconvex_weights_reason_states_the_measured_gap(estimator):
    """The xfail reason's tolerance is what the check's fits actually reach."""
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

    try:
        check_sample_weight_equivalence_on_dense_data("LNModel", estimator)
    except AssertionError as error:
        found = re.search(r"Max relative difference among violations: ([0-9.e+-]+)",
                          str(error))
        assert found is not None, str(error)
        assert float(found.group(1)) <= NONCONVEX_WEIGHTS_RTOL


# Each prediction of these networks is a chain of float32 sums over at most a few
# dozen terms; regrouping one sum moves it by a few ulps of its largest term.
# 64 ulps of float32 bounds that with room to spare and is still 20,000 times
# tighter than any difference between two fitted models the tests compare.
FLOAT32_ROUND_OFF_RTOL = 64 * float(np.finfo(np.float32).eps)


@pytest.mark.parametrize(
    "estimator",
    [e for e in ESTIMATORS if isinstance(e, (CNNEncoder, CNNEncoderCV))],
    ids=lambda e: type(e).__name__,
)
def test_cnn_predictions_do_not_depend_on_sample_order_or_subset(estimator):
    # what check_methods_sample_order_invariance and check_methods_subset_invariance
    # test, to a float32 round-off bound (FLOAT32_BATCH_REASON)
    from sklearn.base import clone

    rng = np.random.default_rng(0)
    X = 3 * rng.uniform(size=(20, 3))
    y = rng.poisson(2.0, size=20).astype(float)
    model = clone(estimator).set_params(random_state=0).fit(X, y)
    order = rng.permutation(20)
    expected = model.predict(X)
    np.testing.assert_allclose(model.predict(X[order]), expected[order],
                               rtol=FLOAT32_ROUND_OFF_RTOL, atol=0)
    for subset in np.array_split(np.arange(20), 2):
        np.testing.assert_allclose(model.predict(X[subset]), expected[subset],
                                   rtol=FLOAT32_ROUND_OFF_RTOL, atol=0)
    # and the predictions are not all equal (a constant model would pass trivially)
    assert np.ptp(expected) > 100 * FLOAT32_ROUND_OFF_RTOL * np.abs(expected).max()
