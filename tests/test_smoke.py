"""The seed tutorial's examples, end to end on a real local cluster."""
import time

import numpy as np
import pytest

import beamlet as ray


def test_put_get(shared_cluster):
    x = ray.put("example")
    assert ray.get(x) == "example"
    ids = [ray.put(i) for i in range(10)]
    assert ray.get(ids) == list(range(10))


@ray.remote
def add2(a, b):
    return a + b


def test_add2(shared_cluster):
    assert ray.get(add2.remote(1, 2)) == 3
    assert ray.get(add2.remote(1, ray.put(2))) == 3
    assert ray.get(add2.remote(ray.put(1), ray.put(2))) == 3


@ray.remote(num_returns=3)
def three():
    return 1, 2, 3


def test_num_returns(shared_cluster):
    a, b, c = three.remote()
    assert ray.get([a, b, c]) == [1, 2, 3]


@ray.remote
def inc(x):
    return x + 1


def test_chain(shared_cluster):
    assert ray.get(inc.remote(inc.remote(inc.remote(0)))) == 3


@ray.remote
def make_array(i):
    return np.full(1000, i, dtype=np.int64)


@ray.remote
def add_arrays(a, b):
    return a + b


def test_tree_reduce(shared_cluster):
    refs = [make_array.remote(i) for i in range(100)]
    while len(refs) > 1:
        refs = [add_arrays.remote(refs[i], refs[i + 1]) for i in range(0, len(refs) - 1, 2)] \
            + (refs[-1:] if len(refs) % 2 else [])
    total = ray.get(refs[0])
    assert (total == sum(range(100))).all()


@ray.remote
def sub_experiment(i, j):
    return i + j


@ray.remote
def run_experiment(i):
    return sum(ray.get([sub_experiment.remote(i, j) for j in range(10)]))


def test_nested(shared_cluster):
    assert ray.get([run_experiment.remote(i) for i in range(5)]) == [45, 55, 65, 75, 85]
