# Ray Core: actors, named and detached actors, ActorPool, async actors
import asyncio
import ray
from ray.util import ActorPool

ray.init()


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value

    def get_counter(self):
        return self.value


c = Counter.remote()
[c.increment.remote() for _ in range(10)]
assert ray.get(c.get_counter.remote()) == 10

named = Counter.options(name="some_name", namespace="colors", lifetime="detached").remote()
same = ray.get_actor("some_name", namespace="colors")
ray.get(same.increment.remote())
assert ray.get(named.get_counter.remote()) == 1
ray.kill(named)


@ray.remote
class Doubler:
    def double(self, v):
        return 2 * v


pool = ActorPool([Doubler.remote(), Doubler.remote()])
assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])) == [2, 4, 6, 8]


@ray.remote
class AsyncActor:
    async def run(self, i):
        await asyncio.sleep(0.1)
        return i


a = AsyncActor.options(max_concurrency=10).remote()
assert ray.get([a.run.remote(i) for i in range(10)]) == list(range(10))


async def main():
    return await asyncio.gather(*[a.run.remote(i) for i in range(3)])

assert asyncio.run(main()) == [0, 1, 2]


@ray.remote(max_restarts=1)
class Fragile:
    def __init__(self):
        self.calls = 0

    def crash(self):
        import os
        os._exit(1)

    def ping(self):
        return "pong"


f = Fragile.remote()
try:
    ray.get(f.crash.remote())
except ray.exceptions.RayActorError:
    pass
assert ray.get(f.ping.remote()) == "pong"     # restarted
print("OK")
