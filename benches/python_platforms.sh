#!/usr/bin/env bash
# MT5's read calls from Linux Python and from Windows CPython under Wine, in one run:
# python/bench/ticks_info.py against a release mtf-streamer of each platform (the Linux one on
# /dev/shm, mtf-streamer.exe on a file in the Wine prefix), each with 1,000 synthetic ticks/s.
# Called by ./scripts/bench; needs ./scripts/wine-python.
# Usage: benches/python_platforms.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20000}
export WINEPREFIX="${WINEPREFIX:-$PWD/target/wine-prefix}"
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=
cargo build --release -q --bin mtf-streamer
cargo build --release -q --target x86_64-pc-windows-gnu --bin mtf-streamer
python=$(./scripts/python-env | tail -1)
winpy=$(./scripts/wine-python | tail -1)
# The release wheel for Windows, installed by the Windows pip (as ./scripts/test-windows does).
rm -f target/wheels/mtf_candles-*-win_amd64.whl
(cd python && "$(dirname "$python")/maturin" build --release --target x86_64-pc-windows-gnu -q -o ../target/wheels)
wine "$winpy" -m pip install -q --disable-pip-version-check --no-index --no-deps --force-reinstall \
    "$(winepath -w target/wheels/mtf_candles-*-win_amd64.whl)" </dev/null 2>&1 | cat
linux_seg=/dev/shm/mtf-bench-platforms-$$
win_seg="$WINEPREFIX/drive_c/mtf-bench-platforms-$$"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$linux_seg" "$linux_seg".lock "$linux_seg".wake "$win_seg" "$win_seg".lock "$win_seg".wake
}
trap cleanup EXIT
target/release/mtf-streamer --segment-path "$linux_seg" --no-http --tick-rate 1000 >/dev/null 2>&1 &
pids+=($!)
wine target/x86_64-pc-windows-gnu/release/mtf-streamer.exe --segment-path "C:\\mtf-bench-platforms-$$" \
    --no-http --tick-rate 1000 </dev/null >/dev/null 2>&1 &
pids+=($!)
echo "== Linux Python"
"$python" python/bench/ticks_info.py --segment "$linux_seg" --rounds "$rounds"
echo "== Windows CPython under Wine"
wine "$winpy" python/bench/ticks_info.py --segment "C:\\mtf-bench-platforms-$$" --rounds "$rounds" </dev/null 2>&1 | cat
