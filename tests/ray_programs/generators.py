# Ray Core: generators (streaming by default, dynamic), in tasks and actors
import asyncio
import ray


@ray.remote
def task():
    for i in range(5):
        yield i


gen = task.remote()
assert ray.get(next(gen)) == 0
assert [ray.get(r) for r in gen] == [1, 2, 3, 4]

gen = task.remote()
ready, unready = ray.wait([gen], timeout=10)
assert ready and ray.get(next(gen)) == 0


@ray.remote(num_returns="dynamic")
def split(n):
    for i in range(n):
        yield i


dyn = ray.get(split.remote(3))
assert [ray.get(r) for r in dyn] == [0, 1, 2]


@ray.remote
def failing():
    yield 1
    raise ValueError("mid-stream")


g = failing.remote()
assert ray.get(next(g)) == 1
try:
    ray.get(next(g))
    raise AssertionError("no error")
except ValueError:
    pass


@ray.remote
class Streamer:
    def stream(self, n):
        for i in range(n):
            yield i

    async def astream(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i


s = Streamer.remote()
assert [ray.get(r) for r in s.stream.remote(3)] == [0, 1, 2]


async def consume():
    out = []
    async for ref in s.astream.remote(3):
        out.append(await ref)
    return out

assert asyncio.run(consume()) == [0, 1, 2]
print("OK")
