# Ray Core: tasks, objects, wait (no init(): the first call starts a cluster)
import time
import numpy as np
import ray


@ray.remote
def square(x):
    return x * x


futures = [square.remote(i) for i in range(4)]
assert ray.get(futures) == [0, 1, 4, 9]

arr = np.ones((1000, 1000))
ref = ray.put(arr)


@ray.remote
def total(a):
    return float(a.sum())


assert ray.get(total.remote(ref)) == 1e6
nested = ray.put([ref])          # a ref inside an object stays a ref
assert isinstance(ray.get(nested)[0], ray.ObjectRef)


@ray.remote
def slow(i):
    time.sleep(0.05 * i)
    return i


refs = [slow.remote(i) for i in range(6)]
seen = []
while refs:
    ready, refs = ray.wait(refs, num_returns=1)
    seen.append(ray.get(ready[0]))
assert sorted(seen) == list(range(6))

# limit the tasks in flight (the "limit pending tasks" pattern)
result_refs = []
for i in range(20):
    if len(result_refs) > 4:
        ready, result_refs = ray.wait(result_refs, num_returns=1)
        ray.get(ready)
    result_refs.append(square.remote(i))
ray.get(result_refs)

# nested tasks
@ray.remote
def fib(n):
    if n < 2:
        return n
    return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))


assert ray.get(fib.remote(6)) == 8
print("OK")
