"""CPU facts that training and serving both act on, with no Paddle import (it must run before MKL's first call)."""
from __future__ import annotations

import os


def fast_mkl_on_amd(environ=os.environ) -> None:
    """Let Paddle's bundled MKL use the AVX-512 (or AVX2) kernels an AMD CPU has.

    Paddle's CPU wheel ships MKL 2019.0.5, which hands non-Intel CPUs its generic SSE code path;
    dygraph convolutions are im2col + MKL sgemm, so on an AMD EPYC training ran at half the speed
    the core allows (make bench measures it), and Paddle Inference with oneDNN off ran batch 64 at
    1.1 ms per image instead of 0.5. MKL before 2020.1 honours MKL_DEBUG_CPU_TYPE: 7 selects
    its AVX-512 (Skylake-SP) kernels, 5 its AVX2 kernels; each only where the CPU has those
    instructions. MKL reads it at its first call, so this runs before any math; a value already set
    is left alone.
    """
    if "MKL_DEBUG_CPU_TYPE" in environ:
        return
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read(65536)
    except OSError:
        return
    if "AuthenticAMD" not in info:
        return
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        environ["MKL_DEBUG_CPU_TYPE"] = "7"
    elif {"avx2", "fma"} <= flags:
        environ["MKL_DEBUG_CPU_TYPE"] = "5"
