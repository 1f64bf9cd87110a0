"""Start the PyTorch peer in the environment that makes the comparison fair.

Debian's python3-torch (1.13) multiplies matrices with whichever libblas.so.3 the dynamic
loader finds first, and its speed depends on that choice: the fair peer is OpenBLAS's OpenMP
build, which shares torch's OpenMP threads (the pthreads build keeps its threads spinning
after each call; bench/bench_core.cpp's OpenBlas::load makes the same choice for mnemo). This
module re-executes the running script once, before torch is imported, with
  - LD_LIBRARY_PATH starting with /usr/lib/x86_64-linux-gnu/openblas-openmp (if installed),
  - OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (OpenBLAS picks its own kernels),
  - OMP_NUM_THREADS set to the requested thread count,
  - Debian's /usr/bin/python3 when the current interpreter cannot import torch (a pyenv or
    venv python first on PATH).
No torch import here: the environment must be settled before torch loads its libraries.
"""
import importlib.util
import os
import sys

OPENBLAS_OPENMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
_MARK = "MNEMO_PEER_REEXEC"


def reexec_for_peer(threads=None):
    """Re-executes this process once with the peer environment (returns if already done)."""
    if os.environ.get(_MARK) == "1":
        return
    env = dict(os.environ)
    env[_MARK] = "1"
    if os.path.isdir(OPENBLAS_OPENMP):
        paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p and p != OPENBLAS_OPENMP]
        env["LD_LIBRARY_PATH"] = ":".join([OPENBLAS_OPENMP] + paths)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    python = sys.executable
    if importlib.util.find_spec("torch") is None and os.path.exists("/usr/bin/python3"):
        python = "/usr/bin/python3"
    os.execve(python, [python] + sys.argv, env)
