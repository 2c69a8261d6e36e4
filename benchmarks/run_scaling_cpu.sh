#!/usr/bin/env bash
# The issue-10/11/12 CPU measurements recorded in docs/performance.md: precisions, --compile,
# torchrun on the CPU, predict against evaluate, the learning curve's cost. Run alone:
#   bash benchmarks/run_scaling_cpu.sh 2>&1 | tee benchmarks/results/run_scaling_cpu.log
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/bench-scaling
mkdir -p "$OUT" benchmarks/results
epochs() { python3 -c "
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
s = [float(r['seconds']) for r in rows]
print(f'epoch 1 {s[0]:.1f} s (with --compile: its warm-up); later epochs median ' +
      f'{sorted(s[1:])[len(s[1:]) // 2]:.2f} s; {rows[-1][\"train_images_per_s\"]} img/s')" "$1"; }

echo "== cnnvit bench --amp auto: float32 and bf16 of every case, their ratio"
cnnvit bench --device cpu --models resnet18-small@28,vit-small-input@28,resnet18@224 \
  --output benchmarks/results/bench_precisions_cpu.json

echo "== --compile on the CPU: epoch times, warm-up in epoch 1 only"
for compile in "" "--compile"; do
  rm -rf "$OUT/compile$compile"
  cnnvit train --dataset digits --model resnet18-small --epochs 4 --amp off $compile \
    --out "$OUT/compile$compile" --quiet
  echo "resnet18-small digits ${compile:-eager}: $(epochs "$OUT/compile$compile/history.csv")"
done

echo "== torchrun on the CPU: 2 processes x 1 thread against 1 process x 2 threads"
rm -rf "$OUT/ddp1" "$OUT/ddp2"
cnnvit train --dataset digits --model resnet18-small --epochs 3 --amp off --threads 2 \
  --out "$OUT/ddp1" --quiet
echo "1 process x 2 threads: $(epochs "$OUT/ddp1/history.csv")"
OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m cnnvit train --dataset digits \
  --model resnet18-small --epochs 3 --amp off --threads 1 --out "$OUT/ddp2" --quiet \
  2> /dev/null
echo "2 processes x 1 thread: $(epochs "$OUT/ddp2/history.csv")"

echo "== quickstart with a learning curve: stage times"
rm -rf "$OUT/curve"
cnnvit run --preset quickstart --train-fractions 0.25,0.5 --out "$OUT/curve" --quiet \
  | grep -E "stage .*done|total"

echo "== predict on PNG files against evaluate in memory (the quickstart's models, 8 px)"
for m in resnet18-small vit-small-input; do
  python benchmarks/predict_vs_evaluate.py "$OUT/curve/models/$m"
done
echo "== the same at 28 px (one epoch on a synthetic 28 px dataset: speed only)"
cnnvit data synth --out "$OUT/synth28.npz" --shape 28x28x3 --classes 8 --samples 800,100,400
for m in resnet18-small vit-small-input; do
  rm -rf "$OUT/p28-$m"
  cnnvit train --dataset "synthetic:$OUT/synth28.npz" --model "$m" --epochs 1 \
    --out "$OUT/p28-$m" --quiet
  python benchmarks/predict_vs_evaluate.py "$OUT/p28-$m"
done
