# Ray Core: the DAG API, placement groups, cancel, retries, queues, runtime_env
import os
import time
import ray
from ray.dag import InputNode, MultiOutputNode
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from ray.util.queue import Queue

ray.init(num_cpus=2)


@ray.remote
def add(a, b):
    return a + b


@ray.remote
class Worker:
    def __init__(self, k):
        self.k = k

    def scale(self, x):
        return self.k * x


with InputNode() as inp:
    w = Worker.bind(10)
    dag = MultiOutputNode([add.bind(inp[0], inp[1]), w.scale.bind(inp[0])])
assert ray.get(dag.execute(1, 2)) == [3, 10]
assert ray.get(dag.execute(5, 5)) == [10, 50]

pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
ray.get(pg.ready(), timeout=30)
ref = add.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
    placement_group=pg, placement_group_bundle_index=0)).remote(1, 1)
assert ray.get(ref) == 2
remove_placement_group(pg)


@ray.remote
def forever():
    while True:
        time.sleep(0.1)


r = forever.remote()
time.sleep(0.5)
ray.cancel(r)
try:
    ray.get(r, timeout=30)
    raise AssertionError("not cancelled")
except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError):
    pass


@ray.remote(max_retries=3, retry_exceptions=True)
def flaky(path):
    n = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(n + 1))
    if n < 2:
        raise RuntimeError("try again")
    return n


path = f"/tmp/beamlet-flaky-{os.getpid()}"
try:
    assert ray.get(flaky.remote(path)) == 2
finally:
    os.unlink(path)

q = Queue()


@ray.remote
def produce(q):
    for i in range(3):
        q.put(i)


ray.get(produce.remote(q))
assert [q.get(timeout=10) for _ in range(3)] == [0, 1, 2]


@ray.remote(runtime_env={"env_vars": {"MY_VAR": "hello"}})
def env():
    return os.environ.get("MY_VAR")


assert ray.get(env.remote()) == "hello"
from ray.util.state import list_actors  # noqa: E402
assert isinstance(list_actors(), list)
print("OK")
