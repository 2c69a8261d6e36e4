#!/usr/bin/env bash
# The CPU benchmarks recorded in docs/performance.md. Run on an otherwise idle machine:
#   bash benchmarks/run_cpu.sh 2>&1 | tee benchmarks/results/run_cpu.log
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/bench
mkdir -p "$OUT" benchmarks/results
stamp() { date +%s.%N; }
took() { python3 -c "print(f'{$(stamp) - $1:.1f} s')"; }
acc() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['accuracy'])" "$1"; }

echo "== cnnvit bench (training step vs model only, share of the matmul peak)"
cnnvit bench --device cpu --output benchmarks/results/bench_cpu.json

echo "== default schedule on digits, one model per command"
for m in resnet18-small vit-small-input; do
  rm -rf "$OUT/digits-$m"; t=$(stamp)
  cnnvit train --dataset digits --model "$m" --out "$OUT/digits-$m" --quiet
  echo "digits $m: wall $(took "$t"), test accuracy $(acc "$OUT/digits-$m/metrics_test.json")"
done

echo "== quickstart preset end to end (with explain)"
rm -rf "$OUT/quickstart"; t=$(stamp)
cnnvit run --preset quickstart --out "$OUT/quickstart" --quiet | grep -E "stage .*done|total|test accuracy"
echo "quickstart: wall $(took "$t")"

echo "== explain: 10 samples x 8 classes x 2 models at 28 px"
rm -rf "$OUT/explain28"
cnnvit data synth --out "$OUT/synth28.npz" --shape 28x28x3 --classes 8 --samples 800,100,200
cnnvit run --preset bloodmnist-native --dataset "synthetic:$OUT/synth28.npz" --epochs 2 \
  --no-explain --quiet --out "$OUT/explain28" > /dev/null
t=$(stamp)
cnnvit explain "$OUT/explain28" --per-class 10 --include-errors 0
echo "explain 80 samples x 2 models: wall $(took "$t")"

echo "== bloodmnist-native --reduced on a synthetic file of BloodMNIST's shape"
cnnvit data synth --out "$OUT/blood_shape.npz" --shape 28x28x3 --classes 8 \
  --samples 11959,1712,3421 --seed 0
rm -rf "$OUT/blood-native"; t=$(stamp)
cnnvit run --preset bloodmnist-native --reduced --dataset "synthetic:$OUT/blood_shape.npz" \
  --out "$OUT/blood-native" --quiet | grep -E "stage .*done|total|test accuracy"
echo "bloodmnist-native --reduced: wall $(took "$t")"
