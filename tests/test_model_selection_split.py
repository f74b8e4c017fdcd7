import numpy as np
import pytest
from sklearn.model_selection import KFold, cross_val_score

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.model_selection import BlockedKFold


@pytest.mark.parametrize("n_samples, n_splits, gap", [(100, 5, 0), (103, 4, 7), (20, 3, 2)])
def test_blocks_are_contiguous_cover_everything_once_and_keep_the_gap(n_samples, n_splits, gap):
    X = np.zeros((n_samples, 1))
    splits = list(BlockedKFold(n_splits, gap=gap).split(X))
    assert len(splits) == n_splits == BlockedKFold(n_splits, gap=gap).get_n_splits()
    tested = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(tested, np.arange(n_samples))
    for train, test in splits:
        assert np.all(np.diff(test) == 1)
        distance = np.abs(train[:, None] - test[None, :]).min(axis=1)
        assert distance.min() > gap
        # everything farther than the gap is used for training
        everything_else = np.setdiff1d(np.arange(n_samples), test)
        far = everything_else[np.abs(everything_else[:, None] - test).min(axis=1) > gap]
        np.testing.assert_array_equal(train, far)


def test_without_gap_it_is_unshuffled_kfold():
    X = np.zeros((37, 2))
    for (train, test), (ref_train, ref_test) in zip(
        BlockedKFold(4).split(X), KFold(4).split(X), strict=True
    ):
        np.testing.assert_array_equal(test, ref_test)
        np.testing.assert_array_equal(train, ref_train)


def test_bad_splits_are_clear_errors():
    with pytest.raises(ValueError, match="n_splits"):
        BlockedKFold(1)
    with pytest.raises(ValueError, match="gap"):
        BlockedKFold(3, gap=-1)
    with pytest.raises(ValueError, match="greater than the number of samples"):
        list(BlockedKFold(5).split(np.zeros((3, 1))))
    with pytest.raises(ValueError, match="leaves no training samples"):
        list(BlockedKFold(2, gap=10).split(np.zeros((10, 1))))


def test_works_with_cross_val_score():
    data = make_glm_data(n_samples=600, n_features=3, random_state=0)
    scores = cross_val_score(PoissonGLM(alpha=1e-3), data.X, data.y, cv=BlockedKFold(3, gap=5))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
