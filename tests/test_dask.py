"""Scale-out on a real dask.distributed cluster (two worker processes on loopback)."""

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_cnnenc import CNNEncoder, PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data, make_v1_population
from sklearn_cnnenc.model_selection import compare_models

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=40,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    return make_glm_data(n_samples=600, n_features=6, n_neurons=3, random_state=0)


def test_grid_search_on_dask_equals_the_serial_search(client, data):
    grid = {"alpha": [1e-3, 0.1, 10.0], "l1_ratio": [0.0, 0.5]}
    serial = GridSearchCV(PoissonGLM(), grid, cv=KFold(3)).fit(data.X, data.y)
    with distributed.get_task_stream(client) as task_stream, parallel_config(backend="dask"):
        distributed_search = GridSearchCV(PoissonGLM(), grid, cv=KFold(3), n_jobs=-1)
        distributed_search.fit(data.X, data.y)
    assert distributed_search.best_params_ == serial.best_params_
    np.testing.assert_allclose(distributed_search.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-10)
    # the fits really ran on the cluster's worker processes
    assert len(task_stream.data) >= 1
    assert {task["worker"] for task in task_stream.data} <= set(client.scheduler_info()["workers"])


@pytest.mark.slow  # CNN fits on two worker processes; the GLM searches stay in the default run
def test_cnn_grid_search_on_dask_equals_the_serial_search(client):
    images = make_v1_population(n_samples=240, n_simple=2, n_complex=1, image_size=10,
                                random_state=0)
    grid = {"channels": [2, 4], "kernel_size": [(3, 3), (5, 3)]}
    estimator = CNNEncoder(n_layers=2, max_epochs=3, batch_size=60, device="cpu",
                           random_state=0)
    serial = GridSearchCV(estimator, grid, cv=KFold(2)).fit(images.X, images.y)
    with parallel_config(backend="dask"):
        on_dask = GridSearchCV(estimator, grid, cv=KFold(2), n_jobs=-1).fit(images.X, images.y)
    assert on_dask.best_params_ == serial.best_params_
    # seeded CPU fits; workers run one thread, so only summation order may differ
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-4)


def test_compare_models_on_a_scheduler_address_equals_the_local_run(client, data):
    models = {"glm": PoissonGLM(alpha=1e-3), "strong": PoissonGLM(alpha=10.0)}
    local = compare_models(models, data.X, data.y, cv=KFold(3), verbose=False)
    with distributed.get_task_stream(client) as task_stream:
        remote = compare_models(models, data.X, data.y, cv=KFold(3), verbose=False,
                                scheduler=client.scheduler.address)
    # the six fits were spread over both worker processes
    assert len({task["worker"] for task in task_stream.data}) == 2
    np.testing.assert_allclose([r["value"] for r in remote.scores],
                               [r["value"] for r in local.scores], rtol=1e-10)


# the snippet's Client() serves its dashboard on the default port; on a shared machine
# another cluster may hold it (distributed then picks another port and warns), and
# distributed's retry leaves a probe socket for the garbage collector
@pytest.mark.filterwarnings("ignore:Port .* is already in use:UserWarning")
@pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning")
def test_the_readme_dask_snippet_runs_as_written():
    import re
    import textwrap
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("**A cluster**"):]
    code = textwrap.dedent(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    namespace: dict = {}
    exec(compile(code, "README.md (dask snippet)", "exec"), namespace)
    assert namespace["search"].best_params_["alpha"] in (0.01, 0.1, 1.0)
