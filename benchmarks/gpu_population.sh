#!/usr/bin/env bash
# Issues 4 and 5 on one GPU node, in one command that fits a 10-minute device call:
# generation 1 (VideoPCA -> top 20 % -> five full-size students) and generation 2 (the
# students' best masks by agreement with their geometric mean, plus generation 1's selected
# frames they left out, as `selection.keep_teacher` -> five fresh students), every
# student trained for SECONDS of wall time, all five at once on the one device
# (`--parallel 5`), evaluated on a held-out world. Students are cached under RUN (default
# runs/gpu_population): run the same command again after a cut-off and the finished ones are
# reused.
#
#   bash benchmarks/gpu_population.sh [RUN] [SECONDS] [MORE ARGS]   # default runs/gpu_population 200
#   bash benchmarks/gpu_population.sh /tmp/smoke 3 --videos 3 --heldout-videos 1 \
#       --students unet_tiny,fconv_tiny --parallel 2 --device cpu     # a smoke run on a CPU
#
# PYTHON (default python) must have PyTorch with CUDA, numpy, scipy, scikit-image, Pillow (no Ray, MLflow or PyAV).
# The report (population_gpu.json) and the log are copied to $OUT when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/gpu_population}
SECONDS_EACH=${2:-200}
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$RUN"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
PYTHONPATH=$PWD timeout 560 "${PYTHON:-python}" benchmarks/population_gpu.py --out "$RUN" --videos 400 \
    --heldout-videos 40 --seconds "$SECONDS_EACH" --generations 2 --parallel 5 \
    --students lowres,fconv,unet,denseunet,dilateunet --ensemble geomean --keep-teacher "$@" 2>&1 | tee "$RUN/log.txt" || status=$?
if [ -n "${OUT:-}" ]; then
    cp "$RUN/population_gpu.json" "$RUN/log.txt" "$OUT/" 2>/dev/null || true
fi
exit "$status"
