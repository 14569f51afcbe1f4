"""Where the per-clip and per-shard work runs: a spawn pool of single-threaded workers (one BLAS
and one OpenCV thread each, Ctrl-C left to the parent), or inline for one worker; the progress
bars; and the free-space check before the shards are written."""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys

import cv2

from preprocessing.clip_cache import process_clip, process_clip_rpca_settings
from preprocessing.errors import InputError
from preprocessing.hdf5_shards import CROP, STORED_FRACTION, write_shard
from preprocessing.parent_death import die_with_parent
from preprocessing.sampling import N_SAMPLED



THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def init_worker(parent):
    # Ctrl-C is the parent's to handle (it terminates the pool); a worker's own traceback
    # would only clutter the terminal.
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A killed parent (kill -9, SIGTERM) releases the output folder's lock: a worker that
    # lived on would write its clip's cache file under the next run's feet.
    die_with_parent(signal.SIGKILL, parent)
    cv2.setNumThreads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # the env vars set before the spawn already hold BLAS to one thread
        pass


def clip_task(task):
    index, clip, cache_file, opts = task
    return index, process_clip(clip, cache_file, opts)


def flow_task(task):
    from preprocessing.flow import process_flow
    index, clip, cache_file, opts, params = task
    return index, process_flow(clip, cache_file, opts, params)


def rpca_settings_task(task):
    clip, jobs = task
    return process_clip_rpca_settings(clip, jobs)


# Bytes of one shard row (16 raw RGB frames, 16 float32 E frames) before compression.
SHARD_ROW_BYTES = N_SAMPLED * CROP * CROP * (3 + 4)


def check_free_space(folder, shard_tasks):
    """Refuse (InputError) to start writing shards that cannot fit: a disk that fills up
    halfway costs the time of the shards already written."""
    need = sum(len(items) * (len(vs) or 1) * SHARD_ROW_BYTES * STORED_FRACTION[compression]
               for _, items, vs, _, _, compression in shard_tasks)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise InputError(f"{folder}: the {len(shard_tasks)} shard(s) to write need about "
                         f"{need / 2**20:,.0f} MiB, and {free / 2**20:,.0f} MiB are free. Free some "
                         "space (or choose another --out) and run again; the clips computed so "
                         "far are kept in the cache")


def shard_task(task):
    path, items, variants, key, group, compression = task
    return path, write_shard(path, items, variants, key, group, compression)


class Runner:
    """Runs tasks in a spawn pool of single-threaded workers, or inline for workers == 1
    (also single-threaded, so results do not depend on the number of workers)."""

    def __init__(self, workers):
        self.workers = max(1, int(workers))
        self.pool = None

    def map(self, fn, tasks):
        tasks = list(tasks)
        if not tasks:
            return
        if self.workers == 1 or len(tasks) == 1:
            from threadpoolctl import threadpool_limits
            n_cv = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                with threadpool_limits(1):
                    for t in tasks:
                        yield fn(t)
            finally:
                cv2.setNumThreads(n_cv)
            return
        if self.pool is None:
            saved = {k: os.environ.get(k) for k in THREAD_VARS}
            os.environ.update({k: "1" for k in THREAD_VARS})
            try:
                self.pool = mp.get_context("spawn").Pool(self.workers, initializer=init_worker,
                                                          initargs=(os.getpid(),))
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        yield from self.pool.imap_unordered(fn, tasks)

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


def progress_bar(total, desc, enabled, unit="clip"):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit,
                disable=not enabled or total == 0, file=sys.stderr, dynamic_ncols=True)
