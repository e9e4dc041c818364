"""What a PyTorch baseline runs on: its intra-op threads, and the BLAS it really uses.

Debian's python3-torch starts with one intra-op thread (its OpenMP default here) while its OpenBLAS runs
its own threads; which is faster depends on the work and the run (two OpenMP threads lose badly on the
GPT-2 forward and go either way on the SAE step), so the benches run each thread count and keep the fastest. That build reports
BLAS_INFO=generic because it calls whatever libblas.so.3 the system provides (Debian's alternatives
point it at OpenBLAS), so for it the library is read from the process's memory map after a first product.
"""

import os

import torch


def set_threads(threads: int) -> None:
    """Intra-op threads: `threads`, or every core for 0."""
    torch.set_num_threads(threads or os.cpu_count() or 1)


def blas_library() -> str:
    built = "unknown"
    for part in torch.__config__.show().replace(",", "\n").splitlines():
        if "BLAS_INFO=" in part:
            built = part.split("BLAS_INFO=", 1)[1].strip()
    if built != "generic":
        return f"BLAS {built}"
    a = torch.ones(64, 64)
    (a @ a).sum().item()
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "blas" in line.lower()}
    except OSError:
        paths = set()
    # libblas.so.3 is the alternatives link; its directory names the implementation.
    names = sorted({os.path.basename(os.path.dirname(os.path.realpath(p))) + "/" + os.path.basename(p)
                    for p in paths if p.startswith("/") and "libblas" not in p and "lapack" not in p})
    return "BLAS " + (", ".join(names) if names else "generic")
