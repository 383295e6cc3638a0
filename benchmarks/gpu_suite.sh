#!/usr/bin/env bash
# Every GPU figure of docs/performance.md in one run on a CUDA device, in bf16, in under 10 minutes:
#
#   pytest-gpu       the engine's GPU-only paths: fused AdamW, bf16 autocast, channels-last, out-of-memory back-off
#                    (tests marked `gpu`)
#   engine-vs-peers  benchmarks/engine_vs_peers.py: the engine against the best-configured peer
#   roofline         benchmarks/roofline.py: attainable matrix-multiply rate, training and inference as fractions
#   data-pipeline    benchmarks/data_pipeline.py: the data-wait share of a step, loader workers on and off
#   mfu              benchmarks/mfu.py: training MFU of ViT-B/16 and BERT-base, with and without --compile, and
#                    zoo bench inference of the same models on the device
#
# With --all, also (past the 10 minutes): scaling (benchmarks/scaling.py on the device) and the two benchmarks of
# paths that compute on the host CPU whatever the machine has: export speed (benchmarks/export_speed.py: ONNX
# Runtime on the CPU) and serve speed (benchmarks/serve_load.py: `zoo serve` runs on the CPU).
#
# Each step has its own time limit, and the steps share a budget of 570 s (--budget to change it), which leaves
# room for the start and the summary within 10 minutes; a failing step is reported and the suite goes on.
# Everything lands in the output folder (default $OUT if set, else benchmarks/results-gpu/): fingerprint.txt
# (nvidia-smi, torch, the commit), STEP.md (what the script printed: its markdown section), STEP.log (its progress
# and errors), mfu/mfu.json, summary.md and summary.json. With --write, each benchmark also writes its own section
# of docs/performance.md, and the suite's summary replaces the section "Figures that wait for a GPU".
#
# --smoke runs every step (the --all ones too) at its smallest size on a CPU: it proves the wiring, its figures
# mean nothing, and a step whose script is not in this checkout is reported as "missing".
#
# Usage: benchmarks/gpu_suite.sh [--smoke] [--write] [--all] [--only STEP,...] [--budget SECONDS] [OUTPUT_DIR]
# (--only runs the named steps alone, e.g. to run one again after a failure.)
# The Python used is $PYTHON, else .venv/bin/python, else python3.

set -u -o pipefail
# The whole script is one block, read before it runs: editing or pulling this file mid-run cannot change it.
{

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }

SMOKE=0 WRITE=0 ALL=0 BUDGET=570 OUTDIR="" ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --write) WRITE=1 ;;
        --all) ALL=1 ;;
        --budget) shift; BUDGET=${1:?--budget needs a number of seconds} ;;
        --only) shift; ONLY=",${1:?--only needs step names, e.g. mfu,pytest-gpu},"; ALL=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu_suite.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) OUTDIR=$1 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
# This checkout's code, whatever copy of zoo the environment has installed.
export PYTHONPATH="$ROOT:$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_TELEMETRY=1
OUTDIR=${OUTDIR:-${OUT:-$ROOT/benchmarks/results-gpu}}
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)

if [ "$SMOKE" = 1 ] && [ "$WRITE" = 1 ]; then
    echo "gpu_suite.sh: --smoke figures mean nothing: they are not written (leave out --write)" >&2; exit 2
fi
if [ "$SMOKE" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
then
    echo "gpu_suite.sh: no CUDA device visible to $PY: run it on a GPU machine, or --smoke to check the wiring" >&2
    exit 2
fi
if [ "$SMOKE" = 1 ]; then DEVICE=cpu PRECISION=fp32; else DEVICE=cuda PRECISION=bf16; fi
[ "$ALL" = 1 ] && [ -z "$ONLY" ] && [ "$BUDGET" = 570 ] && BUDGET=2400

# --- the machine ------------------------------------------------------------------------------------------------

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if git rev-parse --git-dir >/dev/null 2>&1; then
        echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- || echo ' (with local changes)')"
    else
        echo "commit: unknown (not a git checkout)"
    fi
    echo "mode: $([ "$SMOKE" = 1 ] && echo 'smoke (CPU, minimal sizes)' || echo "GPU, $PRECISION")"
    echo "host: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
    "$PY" -c "import platform, torch
print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.version.cuda,
      '| device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')" 2>&1
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,mig.mode.current \
            --format=csv 2>&1
        nvidia-smi -L 2>&1
    else
        echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
    fi
} > "$OUTDIR/fingerprint.txt"
echo "== fingerprint ($OUTDIR/fingerprint.txt)"
cat "$OUTDIR/fingerprint.txt"

# --- running one step -------------------------------------------------------------------------------------------

SUMMARY="$OUTDIR/summary.tsv"
printf 'step\tstatus\tseconds\trc\tcommand\n' > "$SUMMARY"
SUITE_START=$(date +%s)

# supports SCRIPT FLAG: whether the script's --help lists FLAG (the scripts grow; the suite asks, not assumes).
supports() { "$PY" "$1" --help 2>/dev/null | grep -qE -- "$2([^-[:alnum:]_]|\$)"; }

# step NAME TIMEOUT SCRIPT_OR_- ARGS...: run one step, record its status; never stops the suite.
step() {
    local name=$1 limit=$2 script=$3; shift 3
    local log="$OUTDIR/$name.log" md="$OUTDIR/$name.md" status rc start elapsed left
    if [ -n "$ONLY" ] && [[ "$ONLY" != *",$name,"* ]]; then return; fi
    if [ "$script" != "-" ] && [ ! -f "$script" ]; then
        printf '%s\tmissing\t0\t-\t%s\n' "$name" "$script (not in this checkout)" >> "$SUMMARY"
        echo "== $name: missing ($script is not in this checkout)"
        return
    fi
    left=$(( BUDGET - ($(date +%s) - SUITE_START) ))
    if [ "$SMOKE" = 0 ] && [ "$left" -lt 30 ]; then
        printf '%s\tno time left\t0\t-\t%s\n' "$name" "$*" >> "$SUMMARY"
        echo "== $name: not run (the suite's ${BUDGET} s are spent)"
        return
    fi
    [ "$SMOKE" = 0 ] && [ "$limit" -gt "$left" ] && limit=$left
    local command
    if [ "$script" = "-" ]; then command=("$PY" "$@"); else command=("$PY" "$script" "$@"); fi
    echo "== $name (limit ${limit} s): ${command[*]}"
    start=$(date +%s)
    timeout --kill-after=15 "$limit" "${command[@]}" > "$md" 2> "$log"
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    case $rc in
        0) status=ok ;;
        124|137) status=timeout ;;
        *) status=failed ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$elapsed" "$rc" "${command[*]}" >> "$SUMMARY"
    echo "   $status in ${elapsed} s (rc $rc); output $md, log $log"
    if [ "$status" != ok ]; then tail -n 5 "$log" | sed 's/^/   | /'; fi
}

# smoke_flags SCRIPT FLAG VALUE ...: its --smoke (or --quick) and those size flags that the script supports.
smoke_flags() {
    local script=$1; shift
    local flag
    [ -f "$script" ] || return 0
    if supports "$script" --smoke; then printf '%s\n' --smoke
    elif supports "$script" --quick; then printf '%s\n' --quick
    fi
    while [ $# -gt 0 ]; do   # pairs: FLAG VALUE (VALUE "" for a switch)
        flag=$1
        if supports "$script" "$flag"; then printf '%s\n' "$flag"; [ -n "$2" ] && printf '%s\n' "$2"; fi
        shift 2
    done
}

write_flag() { [ "$WRITE" = 1 ] && printf '%s\n' --write; }

# --- the steps --------------------------------------------------------------------------------------------------

if [ "$SMOKE" = 1 ]; then
    T_PYTEST=600 T_PEERS=900 T_ROOF=600 T_PIPE=600 T_MFU=900 T_SCALE=900 T_EXPORT=900 T_SERVE=900
else
    T_PYTEST=90 T_PEERS=120 T_ROOF=60 T_PIPE=80 T_MFU=270 T_SCALE=300 T_EXPORT=900 T_SERVE=600
fi

step pytest-gpu "$T_PYTEST" - -m pytest -q -m gpu -p no:cacheprovider tests

script=benchmarks/engine_vs_peers.py
mapfile -t extra < <([ "$SMOKE" = 1 ] && smoke_flags "$script" --train 64 --val 32 --epochs 1 --repeats 1; write_flag)
step engine-vs-peers "$T_PEERS" "$script" --device "$DEVICE" --precision "$PRECISION" "${extra[@]}"

script=benchmarks/roofline.py
mapfile -t extra < <([ "$SMOKE" = 1 ] && smoke_flags "$script" --steps 1 --top 3 --layers 2; write_flag)
step roofline "$T_ROOF" "$script" --device "$DEVICE" --precision "$PRECISION" "${extra[@]}"

script=benchmarks/data_pipeline.py
mapfile -t extra < <([ "$SMOKE" = 1 ] && smoke_flags "$script" --per-class 8 --epochs 1 --rounds 1; write_flag)
step data-pipeline "$T_PIPE" "$script" --device "$DEVICE" --precision "$PRECISION" "${extra[@]}"

script=benchmarks/mfu.py
mapfile -t extra < <([ "$SMOKE" = 1 ] && printf '%s\n' --smoke --compile off; write_flag)
step mfu "$T_MFU" "$script" --device "$DEVICE" --precision "$PRECISION" --out "$OUTDIR/mfu" "${extra[@]}"

if [ "$ALL" = 1 ] || [ "$SMOKE" = 1 ]; then
    script=benchmarks/scaling.py
    if [ "$SMOKE" = 1 ]; then mapfile -t extra < <(smoke_flags "$script" --only adapt)
    else mapfile -t extra < <(supports "$script" --only && printf '%s\n' --only adapt; write_flag)
    fi
    step scaling "$T_SCALE" "$script" --device "$DEVICE" --precision "$PRECISION" "${extra[@]}"
    # These two compute on the host CPU (ONNX Runtime; zoo serve), so they take no --device.
    mapfile -t extra < <([ "$SMOKE" = 1 ] && printf '%s\n' --quick; write_flag)
    step export-speed "$T_EXPORT" benchmarks/export_speed.py "${extra[@]}"
    step serve-load "$T_SERVE" benchmarks/serve_load.py "${extra[@]}"
fi

# --- summary ----------------------------------------------------------------------------------------------------

TOTAL=$(( $(date +%s) - SUITE_START ))
"$PY" - "$OUTDIR" "$TOTAL" "$SMOKE" "$WRITE" "$PY" <<'EOF'
import csv
import json
import sys
from pathlib import Path

out, total, smoke, write = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1"
steps = list(csv.DictReader((out / "summary.tsv").open(), delimiter="\t"))
for s in steps:   # as a reader would type it: no interpreter path, the output folder as $OUT
    s["command"] = s["command"].replace(str(out), "$OUT").replace(sys.argv[5] + " ", "python ", 1)
    s["seconds"] = int(s["seconds"])
fingerprint = (out / "fingerprint.txt").read_text()
(out / "summary.json").write_text(json.dumps({"total_s": total, "smoke": smoke, "fingerprint": fingerprint,
                                              "steps": steps}, indent=2) + "\n")
rows = [f"| {s['step']} | {s['status']} | {s['seconds']} | `{s['command']}` |" for s in steps]
table = "\n".join(["| step | status | seconds | command |", "| --- | --- | --- | --- |", *rows])
text = f"{table}\n\nWhole suite: {total} s.\n"
(out / "summary.md").write_text(text)
print(f"== summary ({out}/summary.md)\n{text}")
if write:
    sys.path.insert(0, str(Path("benchmarks").resolve()))
    from _report import write_section

    device = next((line.split("| device ", 1)[1] for line in fingerprint.splitlines() if "| device " in line), "?")
    date = fingerprint.splitlines()[0].removeprefix("date: ")
    write_section("gpu_suite", "\n".join([
        "## GPU figures: `benchmarks/gpu_suite.sh`", "",
        f"Last run {date} on {device}, bf16 ({fingerprint.splitlines()[1]}); each benchmark wrote its own "
        "section above. Reproduce on a CUDA machine: `benchmarks/gpu_suite.sh --write` (under 10 minutes; "
        "`--all` adds the scaling, export and serve benchmarks). The steps of that run:", "", table, "",
        f"Whole suite: {total} s.",
    ]))
failed = [s["step"] for s in steps if s["status"] not in ("ok", "missing")]
sys.exit(1 if failed else 0)
EOF
exit $?
}
