#!/bin/bash
# Finetuning-recipe sweep (issue 22): which of nnp finetune's defaults to change for ~100 frames of a new
# molecule. Each variant finetunes the bundled organic-xtb on transfer.py's N = 100 split of a held-out molecule
# for 2 wall-clock minutes on one thread; only the VALIDATION force MAE (the split's 10 validation frames) is
# read, the test trajectory is not touched. Resumable: a variant whose results.json exists is skipped.
#   bash training/experiments/finetune_recipe.sh [OUT_DIR] [RESULTS_JSON]
# Needs transfer.py's split files (runs/transfer/splits/M_pool-n100-sS.extxyz; transfer.py writes them).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/ftsweep}
RESULTS=${2:-results/finetune_recipe_sweep.json}
mkdir -p "$OUT"
START=$(sha256sum "$(.venv/bin/python -c 'from nnp.pretrained import checkpoint_for; print(checkpoint_for("organic-xtb"))')" | cut -c1-8)

run() {  # run MOLECULE SEED NAME [--set ...]
  local mol=$1 seed=$2 name=$3; shift 3
  local out=$OUT/$mol-$name-s$seed
  [ -f "$out/results.json" ] && return 0
  OMP_NUM_THREADS=1 .venv/bin/nnp finetune --from organic-xtb --data runs/transfer/splits/${mol}_pool-n100-s$seed.extxyz \
    --no-progress --set output_dir=$out --set data.val_fraction=0.0909090909 --set data.test_fraction=0.0 \
    --set data.split_seed=$seed --set train.seed=$seed --set train.time_limit_minutes=2 --set train.epochs=100000 \
    "$@" > "$out.log" 2>&1
  echo "$START" > "$out/start.sha256"                     # which organic-xtb the run started from
}

for seed in 0 1; do
  run aspirin $seed b4                                    # nnp finetune's defaults before this sweep (batch 4, lr 1e-3)
  if [ $seed = 0 ]; then                                  # loss weights (pretraining's: energy 100, forces 50)
    run aspirin $seed e10 --set train.energy_weight=10
    run aspirin $seed e1 --set train.energy_weight=1
  fi
  run aspirin $seed lr3e-4 --set train.lr=3e-4
  run aspirin $seed lr3e-3 --set train.lr=3e-3
  run aspirin $seed b8lr2e-3 --set train.batch_size=8 --set train.lr=2e-3
  run aspirin $seed b2 --set train.batch_size=2
  run aspirin $seed b1 --set train.batch_size=1
  run aspirin $seed b2lr5e-4 --set train.batch_size=2 --set train.lr=5e-4
  run aspirin $seed b2ema995 --set train.batch_size=2 --set train.ema_decay=0.995
done
for mol in ethanol paracetamol; do                        # the chosen change on the other two molecules
  run $mol 0 b4
  run $mol 0 b2 --set train.batch_size=2
done

.venv/bin/python - "$OUT" "$RESULTS" <<'PY'
import json, pathlib, sys
out, results = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = []
for path in sorted(out.glob("*/results.json")):
    mol, *name, seed = path.parent.name.split("-")
    doc = json.loads(path.read_text())
    rows.append({"target": mol, "variant": "-".join(name), "seed": int(seed[1:]), "epochs": doc["epochs"],
                 "stopped_by": doc["stopped_by"], "pretrained_sha256_8": (path.parent / "start.sha256").read_text().strip(),
                 "val_force_mae_meV_A": 1000 * doc["metrics"]["val"]["forces_mae"],
                 "val_energy_mae_meV_atom": 1000 * doc["metrics"]["val"]["energy_per_atom_mae"]})
results.parent.mkdir(parents=True, exist_ok=True)
results.write_text(json.dumps({"what": "nnp finetune --from organic-xtb, N = 100, 2 wall-min, one thread; validation only",
                               "command": "bash training/experiments/finetune_recipe.sh", "runs": rows}, indent=1))
for r in rows:
    print(f"{r['target']:12s} {r['variant']:10s} s{r['seed']} {r['epochs']:4d} {r['stopped_by']:15s} {r['val_force_mae_meV_A']:6.2f}")
PY
