# The oldest torch nnp is built and tested with (pyproject.toml says the same): 2.11.0+cu130 on an H200
# (benchmarks/gpu_check.sh, results/gpu_check.json) and 2.13 on the CPU. The package build and the build
# into LAMMPS's own tree both refuse an older torch here, not mid-compile (backend_aoti.cpp follows the
# AOTInductor package API of these versions).
set(NNP_TORCH_TESTED_MIN 2.11)

function(nnp_require_torch version floor)
  if(version VERSION_LESS floor)
    message(FATAL_ERROR "nnp: torch ${version} is older than ${floor}, the oldest nnp is built and tested with: "
                        "install torch>=${floor} (pip install torch==2.13.0) and rebuild")
  endif()
endfunction()
