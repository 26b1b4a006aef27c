"""Prints from actors reach the driver (issue 10 §4): a queue consumer printing in
a loop, lines without a newline, an actor killed right after printing, and a
driver that exits right after its last get — with a cluster it started and with
one it joined.  Each case is a real driver script in its own process."""
import re
import subprocess
import sys
import textwrap

import beamlet as ray

N = 40

CONSUMER = textwrap.dedent(f"""
    import sys
    import beamlet as ray
    from beamlet.util.queue import Queue
    INIT

    @ray.remote
    class Consumer:
        def run(self, q, n):
            for _ in range(n):
                item = q.get()
                print(f"consumed {{item}}")
            print("no newline at the end", end="")
            return n

        def last_words(self):
            print("last words before kill")
            print("and to stderr", file=sys.stderr)
            return True

    q = Queue()
    c = Consumer.remote()
    done = c.run.remote(q, {N})
    for i in range({N}):
        q.put(i)
    assert ray.get(done) == {N}
    assert ray.get(c.last_words.remote())
    ray.kill(c)
    print("DRIVER DONE", flush=True)
    # no shutdown(): the interpreter exits right away (atexit shuts down)
""")


def _check(out):
    assert out.returncode == 0, out.stderr[-3000:]
    stdout = out.stdout
    got = re.findall(r"^\(Consumer pid=\d+\) consumed (\d+)$", stdout, re.M)
    assert got == [str(i) for i in range(N)], stdout
    assert re.search(r"^\(Consumer pid=\d+\) no newline at the end$", stdout, re.M), \
        stdout
    assert re.search(r"^\(Consumer pid=\d+\) last words before kill$", stdout, re.M), \
        stdout
    assert re.search(r"^\(Consumer pid=\d+\) and to stderr$", out.stderr, re.M), \
        out.stderr


def _run(init_line, env=None):
    code = CONSUMER.replace("INIT", init_line)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, env=env)


def test_actor_prints_reach_a_driver_that_exits_at_once():
    _check(_run("ray.init(num_cpus=2)"))


def test_actor_prints_reach_an_auto_initialised_driver():
    _check(_run(""))


def test_actor_prints_reach_a_driver_that_joined_the_cluster():
    info = ray.init(num_cpus=2)
    try:
        _check(_run(f"ray.init(address={info['address']!r})"))
    finally:
        ray.shutdown()
