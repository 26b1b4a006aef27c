"""beamlet quick start: every example of the seed tutorial (Ray 0.3), written as a
Ray user writes them.  Run: python examples/quickstart.py"""
import time

import numpy as np

import beamlet as ray

ray.init(num_cpus=10)

# 1. put and get
x_id = ray.put("example")
print("1. get(put('example')) =", ray.get(x_id))
result_ids = [ray.put(i) for i in range(10)]
print("   get of ten puts       =", ray.get(result_ids))


# 2. remote functions, with values and object refs as arguments
@ray.remote
def add2(a, b):
    return a + b


print("2. add2:", ray.get(add2.remote(1, 2)), ray.get(add2.remote(1, ray.put(2))),
      ray.get(add2.remote(ray.put(1), ray.put(2))))


# 3. parallelism: ten one-second tasks on ten CPUs
@ray.remote
def sleep_one():
    time.sleep(1)


ray.get([sleep_one.remote() for _ in range(10)])  # warm up the workers
start = time.time()
ray.get([sleep_one.remote() for _ in range(10)])
print(f"3. ten 1 s tasks took {time.time() - start:.2f} s")


# 4. several return values
@ray.remote(num_returns=3)
def return_multiple():
    return 1, 2, 3


a_id, b_id, c_id = return_multiple.remote()
print("4. three returns:", ray.get([a_id, b_id, c_id]))


# 5. a chain of dependent tasks
@ray.remote
def f(x):
    return x + 1


print("5. f(f(f(0))) =", ray.get(f.remote(f.remote(f.remote(0)))))


# 6. a tree reduce of 100 numpy arrays
@ray.remote
def generate_data(i):
    return np.full(1000, i, dtype=np.int64)


@ray.remote
def aggregate_data(a, b):
    return a + b


data = [generate_data.remote(i) for i in range(100)]
while len(data) > 1:
    data = data[2:] + [aggregate_data.remote(data[0], data[1])]
print("6. tree reduce: every element =", ray.get(data[0])[0], "(expected", sum(range(100)), ")")


# 7. remote functions that launch remote functions
@ray.remote
def sub_experiment(i, j):
    return i + j


@ray.remote
def run_experiment(i):
    return sum(ray.get([sub_experiment.remote(i, j) for j in range(10)]))


print("7. nested:", ray.get([run_experiment.remote(i) for i in range(5)]))

# 8a. wait for a subset of tasks
refs = [f.remote(i) for i in range(6)]
ready, not_ready = ray.wait(refs, num_returns=2)
print(f"8. wait: {len(ready)} ready, {len(not_ready)} not yet")


# 8b. actors: stateful remote classes
@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


c = Counter.remote()
print("   actor counter:", ray.get([c.increment.remote() for _ in range(3)]))

# 8c. large numpy arrays live in shared memory and are read without copying
big = ray.put(np.arange(10_000_000, dtype=np.float64))
arr = ray.get(big)
print(f"   zero-copy array: {arr.nbytes // 2**20} MiB, read-only={not arr.flags.writeable}")

# 8d. GPUs: tasks ask for them with num_gpus; this machine has
print("   GPUs in the cluster:", ray.cluster_resources().get("GPU", 0))

ray.shutdown()
print("done")
