#!/bin/bash
# How the committed view models (0.1.0-fold002, session 24) were trained on 2 CPU cores: the film model
# (models/weights/view_image) and the segmentation-maps model (models/weights/view_maps), both from
# scratch on the generator's AP, lateral and frog-leg films of Pelvic-Ref-001 and Pelvic-Ref-004
# (Pelvic-Ref-002 held out), then the held-out films and `hipnode eval view`. Run from the repository root:
#   OUT=/some/dir bash models/training/recipes/view_cpu.sh
# Session 24: data about 25 min (two synth processes; the third training folder was stopped at 53 films,
# which is what this script's --samples 53 reproduces), loading 2-4 min (the maps model segments every film
# once), training 10-13 min per model (about 22 s an epoch).
# Without a time budget the runs are reproducible on CPU with the same thread count.
set -eu
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
py=${PYTHON:-.venv/bin/python}
L=models/synth/pelvic_ref
gen=/tmp/hipnode-gen/view; data=/tmp/hipnode-train/view
rm -rf "$gen" "$data"; mkdir -p "$gen" "$data" "$OUT"
train_maps="--labels $L/Pelvic-Ref-001 --labels $L/Pelvic-Ref-004"
$py -m node --log-level WARNING synth --dataset $gen/v_tr512 --views --samples 1800 --size 512 --seed 101 $train_maps &
$py -m node --log-level WARNING synth --dataset $gen/v_tr1000 --views --samples 600 --size 1000 --seed 102 $train_maps &
wait
$py -m node --log-level WARNING synth --dataset $gen/v_tr1000b --views --samples 53 --size 1000 --seed 103 $train_maps &
$py -m node --log-level WARNING synth --dataset $gen/v_ho512 --views --samples 300 --size 512 --seed 201 --labels $L/Pelvic-Ref-002 &
wait
$py -m node --log-level WARNING synth --dataset $gen/v_ho1000 --views --samples 300 --size 1000 --seed 202 --labels $L/Pelvic-Ref-002 &
$py -m node --log-level WARNING synth --dataset $gen/v_hofull --views --samples 60 --size 2500 --seed 203 --labels $L/Pelvic-Ref-002 &
wait
for d in v_tr512 v_tr1000 v_tr1000b; do for f in $gen/$d/view_*; do ln -sf "$f" "$data/${d}_$(basename "$f")"; done; done
n=$(ls $data/*.npz | wc -l)
echo "{\"format\": \"hipnode-train/1\", \"samples\": $n, \"source\": \"hipnode synth --dataset --views: seeds 101-103, labels Pelvic-Ref-001 and Pelvic-Ref-004, merged (prefix FOLDER_)\"}" > $data/dataset.json
$py -m node train view --view-input image --data $data --out "$OUT/view_image" --epochs 24 --batch-size 32 \
  --lr 3e-3 --threads 2 --workers 2 --seed 0 --version 0.1.0-fold002
$py -m node train view --view-input maps --data $data --out "$OUT/view_maps" --epochs 30 --batch-size 32 \
  --lr 3e-3 --threads 2 --workers 2 --seed 0 --version 0.1.0-fold002
$py -m node eval view --data $gen/v_ho512 --data $gen/v_ho1000 --data $gen/v_hofull \
  --weights "$OUT/view_image" --weights "$OUT/view_maps"
