# Ray Core: multiple returns, runtime context, resources, exit_actor, futures
import asyncio
import concurrent.futures
import ray

ray.init(num_cpus=2, resources={"special": 2})
assert ray.is_initialized()
assert ray.cluster_resources()["CPU"] == 2 and ray.cluster_resources()["special"] == 2
assert len(ray.nodes()) == 1 and ray.nodes()[0]["Alive"]


@ray.remote(num_returns=2)
def two():
    return 1, 2


a, b = two.remote()
assert ray.get([a, b]) == [1, 2]


@ray.remote(num_cpus=0.5, resources={"special": 1})
def ctx():
    c = ray.get_runtime_context()
    return c.get_task_id(), c.get_node_id(), c.get_job_id(), ray.get_gpu_ids()


task_id, node_id, job_id, gpus = ray.get(ctx.remote())
assert task_id and node_id == ray.get_runtime_context().get_node_id() and gpus == []
assert job_id == ray.get_runtime_context().get_job_id()


@ray.remote
class Actor:
    @ray.method(num_returns=2)
    def pair(self):
        return "x", "y"

    def actor_id(self):
        return ray.get_runtime_context().get_actor_id()

    def leave(self):
        ray.actor.exit_actor()


h = Actor.remote()
x, y = h.pair.remote()
assert ray.get([x, y]) == ["x", "y"]
assert ray.get(h.actor_id.remote()) == h._actor_id.hex()
try:
    ray.get(h.leave.remote())
except ray.exceptions.RayActorError:
    pass
try:
    ray.get(h.pair.remote()[0])
    raise AssertionError("the actor is still alive")
except ray.exceptions.RayActorError:
    pass

ref = two.remote()[0]
fut = ref.future()
assert isinstance(fut, concurrent.futures.Future) and fut.result(timeout=30) == 1


async def awaits():
    return await two.remote()[1]

assert asyncio.run(awaits()) == 2
try:
    @ray.remote
    def never():
        import time
        time.sleep(60)
    ray.get(never.remote(), timeout=0.5)
    raise AssertionError("no timeout")
except ray.exceptions.GetTimeoutError:
    pass
ready, rest = ray.wait([two.remote()[0]], fetch_local=True, timeout=30)
assert len(ready) == 1
print("OK")
