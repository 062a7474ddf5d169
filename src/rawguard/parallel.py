"""Worker processes that each keep to one core.

numpy's BLAS (OpenBLAS, MKL) and OpenMP start one thread per core in every process by default. A
pool of one process per core then runs cores x cores threads, whose busy-waiting costs more than it
gives: resynthesising 200 clips with Griffin-Lim took 17.5 s in two workers that way and 10.1 s
with one thread each (2-core VM, BENCHMARKS.md, "Copy synthesis"). The thread counts are read when a
child imports numpy, so they have to be in its environment when it starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that set the thread pools of OpenMP, OpenBLAS and MKL."""


@contextlib.contextmanager
def one_thread_per_child() -> Iterator[None]:
    """Within the block, processes started with the ``spawn`` (or ``forkserver``) method run one
    BLAS / OpenMP thread each; this process's own pools, already started, are left as they are.

    The variables are restored on leaving, so only children started inside the block inherit them.
    """
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
