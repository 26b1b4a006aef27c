"""cancel(recursive=True) of a task running on another node reaches the tasks
it submitted there (PEER_CANCEL carries `recursive`)."""
import pytest

import beamlet as ray
from beamlet.cluster_utils import Cluster
from conftest import wait_for
from test_cancel import children_end, parent


def test_recursive_cancel_across_nodes(tmp_path):
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.add_node(num_cpus=3, resources={"other": 10})
        c.wait_for_nodes()
        ray.init(address=c.address)
        ref = parent.options(resources={"other": 1}).remote(str(tmp_path), 2)
        for i in range(2):
            wait_for((tmp_path / f"started{i}").exists, timeout=60)
        ray.cancel(ref)
        with pytest.raises(ray.exceptions.TaskCancelledError):
            ray.get(ref, timeout=60)
        (tmp_path / "stop").touch()
        assert children_end(tmp_path, 2) == ["cancelled"] * 2
    finally:
        ray.shutdown()
        c.shutdown()
