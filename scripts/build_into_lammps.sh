#!/usr/bin/env bash
# Build LAMMPS from its own source tree, with its own CMake and MPI, with pair_style nnp compiled in (no
# plugin): the way clusters build ML pair styles. Tested with Debian 12's LAMMPS source (29 Sep 2021) and OpenMPI
# (scripts/check_debian_lammps.sh); docs/pair_style.md has the recipe.
#
#   scripts/build_into_lammps.sh LAMMPS_SOURCE BUILD_DIR [more cmake -D options]
#
# LAMMPS_SOURCE is the top of a LAMMPS tree (it holds src/ and cmake/). Thin style headers are written into
# its src/ (pair_nnp_style.h and three more, nothing else is changed there); nnp's sources, libtorch (from
# the torch of $PYTHON, default .venv/bin/python) and the checks come from cmake/nnp_in_lammps.cmake.
# Every later build from that tree then compiles nnp in: keep a separate copy for builds without it.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 LAMMPS_SOURCE BUILD_DIR [cmake options]" >&2; exit 2
fi
lammps=$(cd "$1" && pwd); build=$2; shift 2
nnp=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$nnp/.venv/bin/python}
if [ ! -f "$lammps/src/pair.h" ] || [ ! -f "$lammps/cmake/CMakeLists.txt" ]; then
  echo "$lammps is not a LAMMPS source tree (no src/pair.h or cmake/CMakeLists.txt)" >&2; exit 2
fi
"$python" -c "import torch" || { echo "$python cannot import torch (set PYTHON)" >&2; exit 2; }

# LAMMPS registers the styles it finds in src/*.h (PairStyle(...) etc.); these point at nnp's classes
style() {  # file kind macro name class header
  printf '// written by nnp scripts/build_into_lammps.sh: %s %s from %s\n#ifdef %s_CLASS\n// clang-format off\n%s(%s,%s);\n// clang-format on\n#else\n#include "%s"\n#endif\n' \
    "$2" "$4" "$nnp" "$2" "$3" "$4" "$5" "$6" > "$lammps/src/$1"
}
style pair_nnp_style.h PAIR PairStyle nnp PairNNP pair_nnp.h
style compute_bond_deviation_style.h COMPUTE ComputeStyle bond/deviation ComputeBondDeviation compute_bond_deviation.h
style compute_nnp_deviation_style.h COMPUTE ComputeStyle nnp/deviation ComputeNNPDeviation compute_nnp_deviation.h
style fix_nvt_mdsim_style.h FIX FixStyle nvt/mdsim FixNVTMDsim fix_nvt_mdsim.h

cmake -S "$lammps/cmake" -B "$build" -D CMAKE_BUILD_TYPE=Release -D BUILD_MPI=on -D PKG_MOLECULE=on \
  -D CMAKE_PROJECT_INCLUDE="$nnp/cmake/nnp_in_lammps.cmake" -D NNP_DIR="$nnp" -D NNP_PYTHON="$python" "$@"
cmake --build "$build" --target lmp -j "${JOBS:-$(nproc)}"
echo "built $build/lmp with pair_style nnp"
