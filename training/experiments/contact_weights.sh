#!/bin/bash
# Does a lower loss weight on contact frames keep their wall at less cost on the liquid? (RESULTS §14.10)
# The pretrained water loop's model (RESULTS §14.4/§14.8) finetuned once more for 24 epochs, seed 0, on
#   contacts      its 140 labels + the 110 contact frames of §14.9, weight 1
#   contacts_w03  the same, train.config_type_weights={contact: 0.3}
#   control       its 140 labels only
# then exported (float32 .pt2) and evaluated on the 300 K test set; summary in results/contact_weights_water.json.
# Needs runs/al-water (§14.4) and runs/contacts-water/data-003-contacts-typed.extxyz (§14.10). Stages already done are
# skipped, so a rerun only assembles the summary. Usage: bash training/experiments/contact_weights.sh
set -euo pipefail
NNP=.venv/bin/nnp
FROM=runs/al-water/water/active/iter-003/train/member0/best.ckpt
OUT=runs/contacts-water
export OMP_NUM_THREADS=1
declare -A DATA=([contacts_e24]=$OUT/data-003-contacts-typed.extxyz [contacts_w03_e24]=$OUT/data-003-contacts-typed.extxyz
                 [control_e24]=runs/al-water/water/active/data-003.extxyz)
declare -A WEIGHTS=([contacts_e24]="{}" [contacts_w03_e24]="{contact: 0.3}" [control_e24]="{}")
for arm in contacts_e24 contacts_w03_e24 control_e24; do
  if [ ! -f $OUT/$arm/results.json ]; then
    $NNP finetune --from $FROM --data ${DATA[$arm]} --output-dir $OUT/$arm --set train.epochs=24 --set train.seed=0 \
      --set "train.config_type_weights=${WEIGHTS[$arm]}" --no-progress > $OUT/$arm.log 2>&1
  fi
  if [ ! -f $OUT/$arm/model-float32.nnp.pt2 ]; then
    $NNP export --checkpoint $OUT/$arm/best.ckpt --output $OUT/$arm/model-float32.nnp.pt2 --dtype float32 > $OUT/$arm.export.log 2>&1
  fi
  if [ ! -f $OUT/$arm.test.json ]; then
    $NNP evaluate --model $OUT/$arm/model-float32.nnp.pt2 --data data/heldout/water_test.extxyz --json $OUT/$arm.test.json > /dev/null
  fi
done
.venv/bin/python - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
arms = {}
for arm, weight in [("contacts_e24", 1.0), ("contacts_w03_e24", 0.3), ("control_e24", None)]:
    run = json.load(open(f"{out}/{arm}/results.json"))
    test = json.load(open(f"{out}/{arm}.test.json"))
    arms[arm] = {"contact_weight": weight, "frames": run["num_frames"], "epochs": run["epochs"],
                 "test_forces_mae_meV_A": 1000 * test["forces_mae"], "test_energy_mae_meV_atom": 1000 * test["energy_per_atom_mae"],
                 "model": f"{out}/{arm}/model-float32.nnp.pt2"}
doc = {"command": "bash training/experiments/contact_weights.sh", "test_set": "data/heldout/water_test.extxyz",
       "from": "runs/al-water/water/active/iter-003/train/member0/best.ckpt", "arms": arms, "cpu": os.uname().machine}
json.dump(doc, open("results/contact_weights_water.json", "w"), indent=1)
for arm, row in arms.items():
    print(f"{arm}: {sum(row['frames'].values())} frames, {row['epochs']} epochs, test F MAE {row['test_forces_mae_meV_A']:.2f} meV/Å, "
          f"E MAE {row['test_energy_mae_meV_atom']:.2f} meV/atom")
EOF
