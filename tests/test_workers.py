"""preprocessing.workers: the spawn pool's workers die with their parent."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A parent that starts two pool workers on tasks which, after a pause, write a file each.
SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from preprocessing.workers import Runner

    def slow_write(path):
        # One write(2) of under PIPE_BUF bytes: print() writes its pieces separately, and the
        # two workers' lines interleaved ("workerworker 29140").
        os.write(1, f"worker {{os.getpid()}}\\n".encode())
        time.sleep(2)
        open(path, "w").write("written after the parent died")
        return path

    if __name__ == "__main__":
        out = sys.argv[1]
        runner = Runner(2)
        for _ in runner.map(slow_write, [os.path.join(out, "a"), os.path.join(out, "b")]):
            pass
""")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:          # a zombie is dead too
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_of_a_killed_run_write_nothing(tmp_path, sig):
    """kill -9 or kill -TERM of `preprocess.py run`: its pool workers used to live on, finish
    their clips and write cache files after the folder's lock was released, over the results
    of the next run."""
    script = tmp_path / "parent.py"
    script.write_text(SCRIPT.format(root=ROOT))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
    pids = [int(proc.stdout.readline().split()[1]) for _ in range(2)]
    proc.send_signal(sig)
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "pool workers outlived their killed parent"
    time.sleep(2.5)                                # when they would have written
    assert os.listdir(out) == []
