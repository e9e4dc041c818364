"""What a PyTorch baseline runs on: all cores, and the BLAS it really uses.

Debian's python3-torch starts with one intra-op thread (its OpenMP default here), which leaves half of
this machine's cores idle for every non-GEMM op; a fair baseline uses them all. That build reports
BLAS_INFO=generic because it calls whatever libblas.so.3 the system provides (Debian's alternatives
point it at OpenBLAS), so for it the library is read from the process's memory map after a first product.
"""

import os

import torch


def use_all_cores() -> None:
    torch.set_num_threads(os.cpu_count() or 1)


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
