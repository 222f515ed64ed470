"""Experiment (not shipped): the function with a pool of LiteRT interpreters.

The shipped ``LiteRTBackend`` holds one interpreter behind a lock, so on a
2-core box concurrent requests queue for it while each invoke spreads over
SKINSCAN_THREADS threads. This launcher swaps in a pool of
``SKINSCAN_BENCH_INTERPRETERS`` interpreters (each SKINSCAN_THREADS threads)
and then runs the ordinary ``functions-framework`` command line, so the
benchmark can measure the proposed change through the same HTTP path.
"""

from __future__ import annotations

import os
import queue
import sys
from pathlib import Path

import numpy as np

from skinscan import backends


class PooledLiteRTBackend(backends.LiteRTBackend):
    def __init__(self, path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(path, threads)
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._pool.put(self.interpreter)
        for _ in range(int(os.environ.get("SKINSCAN_BENCH_INTERPRETERS", "2")) - 1):
            interpreter = Interpreter(model_path=str(path), num_threads=threads or backends._threads())
            interpreter.allocate_tensors()
            self._pool.put(interpreter)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        interpreter = self._pool.get()
        try:
            rows = []
            for image in batch:
                interpreter.set_tensor(self._input, image[np.newaxis].astype(np.float32))
                interpreter.invoke()
                rows.append(interpreter.get_tensor(self._output)[0].copy())
        finally:
            self._pool.put(interpreter)
        joined = np.stack(rows)
        return joined[:, :-backends.N_CLASSES], joined[:, -backends.N_CLASSES:]


backends.LiteRTBackend = PooledLiteRTBackend

if __name__ == "__main__":
    from functions_framework._cli import _cli

    sys.argv[0] = str(Path(sys.argv[0]).name)
    _cli()
