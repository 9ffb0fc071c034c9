#!/bin/bash
# Session 27: the seeds' three segmentation families (U-Net, residual U-Net, U-Net++) trained the same way
# at the same 2-CPU-core time budget, Pelvic-Ref-002 held out, each scored by the whole analysis with it as
# the segmentation (committed landmark models, no fine stage, so every segment is the network's own).
# Results: docs/models.md, "Segmentation model". Run from the repository root:
#   OUT=/some/dir MINUTES=14 bash models/training/recipes/segment_architectures_cpu.sh
# The three trainings run one after another with 2 threads each (a time budget makes a run depend on the
# machine's speed; with --epochs alone and a fixed thread count it is reproducible on CPU).
set -eu
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
py=${PYTHON:-.venv/bin/python}
L=models/synth/pelvic_ref
minutes=${MINUTES:-14}
mkdir -p "$OUT"
[ -f "$OUT/train/dataset.json" ] || $py -m node --log-level WARNING synth --dataset "$OUT/train" --samples 320 \
  --size 512 --seed 2701 --labels $L/Pelvic-Ref-001 --labels $L/Pelvic-Ref-004
[ -f "$OUT/heldout/dataset.json" ] || $py -m node --log-level WARNING synth --dataset "$OUT/heldout" --samples 40 \
  --size 512 --seed 2702 --labels $L/Pelvic-Ref-002
for arch in unet resunet unetpp; do
  w="$OUT/weights_$arch"
  [ -f "$w/segment/manifest.json" ] || $py -m node train segment --data "$OUT/train" --out "$w/segment" \
    --architecture $arch --size 128 --base-channels 8 --batch-size 4 --lr 4e-3 --epochs 1000 \
    --max-minutes "$minutes" --threads 2 --seed 0 --version "0.0.1-$arch" 2>&1 | tail -3
  rm -rf "$w/landmarks" && cp -r models/weights/landmarks "$w/landmarks"
  $py -m node eval analyze --data "$OUT/heldout" --weights "$w" --anatomy Pelvic-Ref-002 > "$OUT/eval_$arch.txt" 2>&1
done
grep -H -E "^(pelvis|femur|femoral_head|acetabular_roof|joint_space|implant)" "$OUT"/eval_*.txt
