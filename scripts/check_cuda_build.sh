#!/usr/bin/env bash
# Build nnp against a CUDA torch wheel on a machine without a GPU and without a system CUDA toolkit,
# then run the test suite with that build (CUDA tests skip; everything else runs on the CPU).
# Not run in CI (multi-GB download); see docs/gpu.md.
#
#   bash scripts/check_cuda_build.sh [pytest args...]        # default: the whole suite
#
# Environment:
#   NNP_CUDA_VENV    the venv to create/reuse (default .venv-cuda in the repository; gitignored)
#   NNP_CUDA_BUILD   the CMake build directory (default build/cuda; gitignored)
#   NNP_CUDA_REPORT  the JSON written at the end (default results/cuda_build.json)
#   NNP_CUDA_SKIP_TESTS=1   build only
#
# The CUDA compiler and headers come from NVIDIA's PyPI wheels (cuda-toolkit extras nvcc, crt, cccl,
# nvvm, cudart for CUDA 13 torch; nvidia-cuda-nvcc-cu12 for CUDA 12 torch), laid out as a toolkit root
# inside the venv: libtorch's CMake config (Caffe2 public/cuda.cmake) calls find_package(CUDA),
# enable_language(CUDA) and find_package(CUDAToolkit REQUIRED), which need nvcc, cudart and a libcuda to
# link against. libcuda is the driver's; without a driver a stub (lib/stubs/libcuda.so, no symbols) is
# linked with --as-needed, and the check below makes sure no nnp library ends up needing it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${NNP_CUDA_VENV:-$root/.venv-cuda}
build=${NNP_CUDA_BUILD:-build/cuda}
report=${NNP_CUDA_REPORT:-$root/results/cuda_build.json}
python=${PYTHON:-python3}
torch_version=$(sed -n 's/^torch==\(.*\)$/\1/p' requirements-cpu.txt)
log_dir=$venv/logs
start=$(date +%s)

# PyPI's default torch wheel for Linux x86_64 is the CUDA build. A machine-wide pip config may add a
# find-links folder holding the +cpu wheel of the same version (which pip would prefer): ignore it.
pip_pypi() { env PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
mkdir -p "$log_dir"
echo "== torch==$torch_version (CUDA wheel from PyPI) and the requirements into $venv"
pip_pypi install --quiet "torch==$torch_version" -r requirements-cpu.txt
cuda=$("$venv/bin/python" -c "import torch; print(torch.version.cuda or '')")
if [ -z "$cuda" ]; then
    echo "check_cuda_build: $venv has a CPU-only torch ($("$venv/bin/python" -c 'import torch; print(torch.__version__)')):" \
         "remove the venv (rm -r $venv) and rerun, or set NNP_CUDA_VENV to a new path" >&2
    exit 1
fi
cuda_major=${cuda%%.*}

echo "== CUDA $cuda compiler and headers (pip)"
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ "$cuda_major" -ge 13 ]; then
    toolkit=$("$venv/bin/python" -c "from importlib.metadata import version; print(version('cuda-toolkit'))")
    pip_pypi install --quiet "cuda-toolkit[nvcc,crt,cccl,nvvm,cudart]==$toolkit"
    cuda_root=$site/nvidia/cu$cuda_major
else  # CUDA 12 wheels: one folder per component; nvcc's wheel holds the compiler, crt and nvvm
    runtime=$("$venv/bin/python" -c "from importlib.metadata import version; print(version('nvidia-cuda-runtime-cu12'))")
    pip_pypi install --quiet "nvidia-cuda-nvcc-cu12==$runtime"
    cuda_root=$site/nvidia/cuda_nvcc
    for part in cuda_runtime cuda_nvrtc cublas cuda_cupti; do
        [ -d "$site/nvidia/$part" ] || continue
        cp -rsf "$site/nvidia/$part/include/." "$cuda_root/include/" 2>/dev/null || true
        mkdir -p "$cuda_root/lib" && cp -rsf "$site/nvidia/$part/lib/." "$cuda_root/lib/"
    done
fi

# The layout CMake's FindCUDAToolkit and nvcc.profile expect: lib64, unversioned library names, stubs/.
[ -e "$cuda_root/lib64" ] || ln -s lib "$cuda_root/lib64"
for lib in "$cuda_root"/lib/lib*.so.*; do
    name=$(basename "$lib")
    plain=$cuda_root/lib/${name%%.so.*}.so
    [ -e "$plain" ] || ln -s "$name" "$plain"
done
mkdir -p "$cuda_root/lib/stubs"
if [ ! -e "$cuda_root/lib/stubs/libcuda.so" ]; then
    echo "" | gcc -x c -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda_root/lib/stubs/libcuda.so" -
fi
nvcc_version=$("$cuda_root/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')

echo "== build nnp in $build (log: $log_dir/build.log)"
build_start=$(date +%s)
export CUDA_HOME=$cuda_root CUDA_PATH=$cuda_root
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
cmake_defines=(
    "-Ccmake.define.CUDAToolkit_ROOT=$cuda_root"
    "-Ccmake.define.CUDA_TOOLKIT_ROOT_DIR=$cuda_root"
    "-Ccmake.define.CMAKE_CUDA_COMPILER=$cuda_root/bin/nvcc"
    "-Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90"
    "-Ccmake.define.NNP_EXPECT_CUDA=ON"
    "-Cbuild-dir=$build"
)
if ! pip_pypi install --no-build-isolation --no-deps -v -e . "${cmake_defines[@]}" >"$log_dir/build.log" 2>&1; then
    tail -40 "$log_dir/build.log" >&2
    echo "check_cuda_build: the build failed; the whole log is $log_dir/build.log" >&2
    exit 1
fi
build_seconds=$(( $(date +%s) - build_start ))
grep -E "nnp: |PyTorch: CUDA" "$log_dir/build.log" | sed 's/^ */  /' || true

# Nothing may need the driver library: a CPU-only machine with this torch must still load nnp.
for so in "$site"/nnp/*.so; do
    if readelf -d "$so" | grep -q "libcuda.so"; then
        echo "check_cuda_build: $so needs libcuda.so (the stub leaked into the link): fix CMakeLists.txt" >&2
        exit 1
    fi
done
"$venv/bin/python" -c "import nnp._evaluator, torch; assert torch.version.cuda; print('  nnp._evaluator loads with torch', torch.__version__)"

tests_rc=0
summary="not run"
if [ "${NNP_CUDA_SKIP_TESTS:-0}" != 1 ]; then
    echo "== pytest with the CUDA build (log: $log_dir/pytest.log)"
    test_start=$(date +%s)
    PATH=$venv/bin:$PATH "$venv/bin/python" -m pytest -q -p no:cacheprovider "${@}" >"$log_dir/pytest.log" 2>&1 || tests_rc=$?
    test_seconds=$(( $(date +%s) - test_start ))
    summary=$(tail -1 "$log_dir/pytest.log")
    grep -E "^(FAILED|ERROR)" "$log_dir/pytest.log" || true
    echo "  $summary ($test_seconds s)"
fi

mkdir -p "$(dirname "$report")"
"$venv/bin/python" - "$report" "$build_seconds" "${test_seconds:-0}" "$tests_rc" "$summary" "$nvcc_version" \
    "$(( $(date +%s) - start ))" "$*" <<'EOF'
import json, platform, sys
import torch
report, build_s, test_s, rc, summary, nvcc, total_s, args = sys.argv[1:]
json.dump({
    "torch": torch.__version__, "torch_cuda": torch.version.cuda, "nvcc": nvcc,
    "cudnn": torch.backends.cudnn.version(), "gpu_visible": torch.cuda.is_available(),
    "python": platform.python_version(), "build_seconds": int(build_s), "pytest_args": args,
    "pytest_seconds": int(test_s), "pytest_exit_code": int(rc), "pytest_summary": summary,
    "total_seconds": int(total_s),
}, open(report, "w"), indent=1)
print(f"  wrote {report}")
EOF
exit "$tests_rc"
