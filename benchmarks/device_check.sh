#!/usr/bin/env bash
# The pretraining benchmark on a lent GPU machine: clips/s and model FLOP utilisation of the real loop at ResNet-50 +
# BERT-base, 4 frames x 224 px, bf16, batch 128 (`benchmarks/bench_train.py --plan gpu`; its docstring says what is
# timed and why the video level runs at a smaller batch there).
#
# The device machine (the device tool's nvidia-h200; /work/.library/device/KINDS.md) reaches no package registry. Its
# python3 (3.12, /opt/torch/.venv) has CUDA torch, accelerate 1.15, tokenizers 0.23, huggingface_hub 1.x, numpy,
# pyarrow, pandas, but no datasets (nor its dill and multiprocess), decord, faiss or PyAV, and a transformers older
# than the project's >= 5.24. So two steps:
#
#   1. here, once (~1 min; needs pip's access to PyPI and the project's .venv, whose PyAV writes the videos):
#        bash benchmarks/device_check.sh prepare
#      downloads the missing packages as Python 3.12 x86-64 wheels and generates the gpu plan's OphVL-mini, both into
#      build/device_check/ (ignored by git; ~62 MB with the working tree, under the 64 MiB a call carries);
#   2. through the device tool, one call (the benchmark itself takes ~2-4 min; the script stops it at 5):
#        run(command="bash benchmarks/device_check.sh", carry=["build/device_check"], timeout_s=420)
#      then give_back unless you rerun at once.
#
# What comes back in $OUT: bench_train_gpu.txt (the benchmark's tables), device_check.log (all output: nvidia-smi,
# package versions, a bf16 matrix-product rate to set the MFU against) and gpu_util.txt (`nvidia-smi dmon` during the
# benchmark: SM and memory busy % per second, which shows whether the loop keeps the GPU fed).

set -uo pipefail
cd "$(dirname "$0")/.."

DIR=build/device_check
# What the device's python3 lacks or has too old, at the versions the project is tested with (constraints.txt).
# fsspec is pinned because datasets 5.2 supports no newer release. huggingface_hub is not carried: the device's 1.x
# satisfies transformers and datasets (>= 1.31), and the benchmark's code reaches it only through them (offline).
WHEELS=(transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0 decord==0.6.0
        faiss-cpu==1.15.1)
CARRY_LIMIT_MIB=64

prepare() {
    set -e
    local python=${PYTHON:-.venv/bin/python}
    rm -rf "$DIR/wheels" "$DIR/ophvl-mini"
    mkdir -p "$DIR/wheels"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 \
        -d "$DIR/wheels" "${WHEELS[@]}"
    "$python" benchmarks/bench_train.py --plan gpu --make_data "$DIR/ophvl-mini"
    # The evaluation benchmark videos: the pretraining benchmark does not read them, and every MB counts.
    rm -rf "$DIR/ophvl-mini/benchmark"
    local carried tree
    carried=$(du -sb "$DIR" | cut -f1)
    tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 |
           cut -f1)
    echo "build/device_check: $((carried / 1024 / 1024)) MiB, working tree $((tree / 1024 / 1024)) MiB" \
         "(a call carries at most $CARRY_LIMIT_MIB MiB in all)"
    if (( (carried + tree) / 1024 / 1024 >= CARRY_LIMIT_MIB )); then
        echo "too large to carry: leave out a wheel (faiss-cpu: then the run needs --retrieval false)" >&2
        exit 1
    fi
}

device_run() {
    local out=$1
    if [[ ! -d $DIR/wheels || ! -d $DIR/ophvl-mini/data ]]; then
        echo "no $DIR: run 'bash benchmarks/device_check.sh prepare' on the development machine first, and name" \
             "$DIR in the device tool's carry" >&2
        return 2
    fi
    date -u +"%Y-%m-%d %H:%M:%S UTC"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    echo "CPU cores: $(nproc)"
    # DataLoader workers hand their batches over in shared memory: 8 workers x 2 prefetched batches of 128 clips
    # (128 x 4 x 3 x 224 x 224 float32, 308 MB each) need ~5 GB of /dev/shm. A small one (a container's 64 MB) would
    # kill the workers with a bus error, so it is enlarged first where it can be.
    local shm_kib
    shm_kib=$(df --output=size -k /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
    if [[ -n $shm_kib && $shm_kib -lt 8388608 ]]; then
        mount -o remount,size=16G /dev/shm || echo "warning: /dev/shm is $((shm_kib / 1024)) MiB and could not be" \
            "enlarged: the DataLoader workers may fail (rerun with --dataloader_num_workers 2)"
    fi
    df -h /dev/shm | tail -1

    # The carried wheels go first on the path; the image's own packages stay as they are.
    python3 -m pip install -q --root-user-action=ignore --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$DIR"/wheels/*.whl || return 3
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    # Nothing outside the machine answers: no Hub look-up may wait for a network timeout.
    export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

    # Every import the benchmark needs, the versions, and the bf16 matrix-product rate (the peak actually reachable,
    # beside the datasheet's 989.5 TFLOP/s that the benchmark's MFU uses), in under a minute.
    timeout 90 python3 - <<'EOF' || return 4
import importlib.metadata as md
import sys
import time

for name in ("torch", "accelerate", "transformers", "tokenizers", "datasets", "huggingface_hub", "fsspec", "pyarrow",
             "numpy", "decord", "faiss-cpu", "safetensors", "regex"):
    try:
        print(f"{name} {md.version(name)}", end="; ")
    except md.PackageNotFoundError:
        print(f"{name} MISSING", end="; ")
print(f"python {sys.version.split()[0]}")
import torch
import datasets, decord, faiss, transformers  # noqa: E401,F401  (fail here, not in the benchmark's worker)
import ophclip_train.trainer, datasets_ophvl  # noqa: E401,F401
assert torch.cuda.is_available(), "torch sees no GPU"
print(f"{torch.cuda.get_device_name()}, torch CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn_like(a)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
start = time.perf_counter()
for _ in range(20):
    a @ b
torch.cuda.synchronize()
seconds = (time.perf_counter() - start) / 20
print(f"bf16 matrix product 8192^3 on random data: {2 * 8192**3 / seconds / 1e12:.0f} TFLOP/s")
EOF

    nvidia-smi dmon -s um -d 1 > "$out/gpu_util.txt" 2>&1 &
    local dmon=$!
    timeout 300 python3 benchmarks/bench_train.py --plan gpu --mixed_precision bf16 --dataloader_num_workers 8 \
        --data "$DIR/ophvl-mini" 2>&1 | tee "$out/bench_train_gpu.txt"
    local status=$?
    kill "$dmon" 2>/dev/null
    return $status
}

case "${1:-run}" in
    prepare) prepare ;;
    run)
        OUT=${OUT:-/tmp/device_check_out}
        mkdir -p "$OUT"
        device_run "$OUT" 2>&1 | tee "$OUT/device_check.log"
        ;;
    *) echo "usage: bash benchmarks/device_check.sh [prepare|run]" >&2; exit 2 ;;
esac
