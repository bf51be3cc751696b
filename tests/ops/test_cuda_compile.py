"""Compile-only checks of the CUDA side of the extension, for machines without a GPU.

- every csrc/**/*.cu compiles with `nvcc -c` (they include only CUDA headers);
- the kernel sources include nothing from torch, also through the csrc headers they
  include (resolved from csrc/, as the build's include path does);
- the torch glue of each op family (csrc/ops/*/*_cuda.cpp) compiles against this torch's
  headers plus the CUDA toolkit's headers (object only; it cannot be linked against a
  CPU build of torch).

Skipped with a reason when nvcc (or a host compiler) is not on PATH. The target
architecture defaults to sm_90; set MOSEL_NVCC_ARCH to change it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
CU_FILES = sorted(CSRC.rglob("*.cu"))
GLUE_FILES = sorted(CSRC.rglob("*_cuda.cpp"))
NVCC = shutil.which("nvcc")
ARCH = os.environ.get("MOSEL_NVCC_ARCH", "sm_90")
# What torch.utils.cpp_extension passes to nvcc for extension sources.
TORCH_NVCC_DEFINES = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: CUDA sources not compile-checked")


def _cuda_include_dir() -> Path | None:
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    try:
        from torch.utils import cpp_extension

        candidates.append(cpp_extension.CUDA_HOME)
    except ImportError:
        pass
    if NVCC is not None:
        candidates.append(str(Path(NVCC).resolve().parent.parent))
    candidates.append("/usr/local/cuda")
    for home in filter(None, candidates):
        inc = Path(home) / "include"
        if (inc / "cuda_runtime_api.h").is_file():
            return inc
    return None


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CSRC)) for p in paths]


def test_there_are_cuda_sources():
    assert CU_FILES, f"no .cu files under {CSRC}"
    # every op family with a CUDA kernel has its torch glue next to it
    assert {p.parent for p in CU_FILES} == {p.parent for p in GLUE_FILES}


@pytest.mark.parametrize("source", CU_FILES, ids=_ids(CU_FILES))
def test_kernel_sources_include_only_cuda_headers(source):
    seen = set()
    todo = [source]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for inc in re.findall(r'^\s*#\s*include\s*([<"][^>"]+[>"])', path.read_text(), flags=re.M):
            name = inc[1:-1]
            if inc.startswith('"'):
                local = CSRC / name
                assert local.is_file(), f"{path.name} includes {inc}, which is not under csrc/"
                todo.append(local)
            else:
                assert not name.startswith(("torch/", "ATen/", "c10/", "pybind11/")), f"{path.name} includes {inc}"
    assert len(seen) > 1  # the walk did reach the local headers


@needs_nvcc
@pytest.mark.parametrize("source", CU_FILES, ids=_ids(CU_FILES))
def test_nvcc_compiles(source, tmp_path):
    obj = tmp_path / (source.stem + ".o")
    cmd = [NVCC, "-c", f"-arch={ARCH}", "-std=c++17", "-O3", "--expt-relaxed-constexpr",
           *TORCH_NVCC_DEFINES, "-I", str(CSRC), "-Xcompiler", "-Wall", str(source), "-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    assert obj.is_file() and obj.stat().st_size > 0
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "warning" in ln.lower() and "csrc" in ln]
    assert not ours, "\n".join(ours)


@needs_nvcc
@pytest.mark.parametrize("source", GLUE_FILES, ids=_ids(GLUE_FILES))
def test_cuda_glue_compiles_against_torch_headers(source, tmp_path):
    pytest.importorskip("torch")
    from torch.utils import cpp_extension

    cxx = shutil.which(os.environ.get("CXX", "c++"))
    if cxx is None:
        pytest.skip("no host C++ compiler on PATH")
    cuda_inc = _cuda_include_dir()
    if cuda_inc is None:
        pytest.skip("CUDA toolkit headers not found next to nvcc")
    torch_inc = [Path(p) for p in cpp_extension.include_paths()]
    if not any((p / "c10" / "cuda" / "CUDAStream.h").is_file() for p in torch_inc):
        pytest.skip("this torch ships no c10/cuda headers")
    extra = []
    if not any((p / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").is_file() for p in torch_inc):
        # Generated at torch build time and only shipped with CUDA builds of torch.
        shim = tmp_path / "shim" / "c10" / "cuda" / "impl"
        shim.mkdir(parents=True)
        (shim / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        extra = ["-isystem", str(tmp_path / "shim")]
    cmd = [cxx, "-c", "-std=c++20", "-O1", "-fPIC", "-Wall", "-DTORCH_API_INCLUDE_EXTENSION_H",
           "-I", str(CSRC), *sum((["-isystem", str(p)] for p in torch_inc), []),
           "-isystem", str(cuda_inc), *extra, str(source), "-o", str(tmp_path / "glue.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"
