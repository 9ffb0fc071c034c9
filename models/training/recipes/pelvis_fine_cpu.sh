#!/bin/bash
# How the session-17 pelvis_fine candidate (0.1.0-fold002, width 8) was trained on 2 CPU cores: the fine
# pelvis segmentation around each ischial tuberosity (128 x 128 crops at 0.4 mm), from scratch,
# Pelvic-Ref-002 held out. Not shipped: no dependable held-out gain (docs/models.md, session 17); to use
# a model trained this way, copy OUT to models/weights/pelvis_fine/. Run from the repository root:
#   OUT=/some/dir bash models/training/recipes/pelvis_fine_cpu.sh
# Session 17: data 300 films (about 12 min, two synth processes), training 11 min (60 epochs, 12 s each).
# Width 8 keeps model.onnx at 2.0 MB (width 12, 40 epochs: 4.4 MB).
# Without a time budget the run is reproducible on CPU with the same thread count.
set -eu
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
py=${PYTHON:-.venv/bin/python}
L=models/synth/pelvic_ref
gen=/tmp/hipnode-gen/pelvis_fine; data=/tmp/hipnode-train/pelvis_fine
rm -rf "$gen" "$data"; mkdir -p "$gen" "$data" "$OUT"
for seed in 2001 2002; do
  $py -m node --log-level WARNING synth --dataset $gen/d$seed --samples 150 --size 2500 --seed $seed \
    --labels $L/Pelvic-Ref-001 --labels $L/Pelvic-Ref-004 &
done
wait
for seed in 2001 2002; do for f in $gen/d$seed/sample_*; do ln -sf "$f" "$data/s${seed}_$(basename "$f")"; done; done
n=$(ls $data/*.npz | wc -l)
echo "{\"format\": \"hipnode-train/1\", \"samples\": $n, \"source\": \"hipnode synth --dataset --size 2500 --samples 150, seeds 2001 and 2002, labels Pelvic-Ref-001 and Pelvic-Ref-004, merged (prefix sSEED_)\", \"seed\": 2001}" > $data/dataset.json
$py -m node train pelvis-fine --data $data --out "$OUT" --exclude-anatomy Pelvic-Ref-002 --base-channels 8 \
  --batch-size 16 --lr 3e-3 --epochs 60 --threads 2 --workers 1 --seed 5 --version 0.1.0-fold002
