#!/usr/bin/env bash
# Screenshot of TensorBoard following a training while it runs: docs/figures/tensorboard.png.
#   bash docs/figures/make_tensorboard_screenshot.sh      (from the repository root, venv active)
# Needs Debian's chromium (apt-get install chromium). Everything listens on localhost only.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
port=${PORT:-6123}
python train.py --env four_rooms --wandb-mode disabled --eval-every 100000 --runs-dir "$work/runs" \
    --run-name four_rooms__pathwise__0 > "$work/train.log" 2>&1 &
train_pid=$!
trap 'kill $train_pid $tb_pid 2>/dev/null || true; rm -rf "$work"' EXIT
tb_pid=
# Let it log a few hundred thousand steps, then watch it live.
for _ in $(seq 120); do
    [ -f "$work/runs/four_rooms__pathwise__0/metrics.jsonl" ] && \
        [ "$(grep -c eval/ "$work/runs/four_rooms__pathwise__0/metrics.jsonl")" -ge 2 ] && break
    sleep 1
done
tensorboard --logdir "$work/runs" --host 127.0.0.1 --port "$port" > "$work/tb.log" 2>&1 &
tb_pid=$!
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port" > /dev/null && break; sleep 1; done
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/chrome" --hide-scrollbars \
    --window-size=1400,1100 --virtual-time-budget=15000 \
    --screenshot="docs/figures/tensorboard.png" "http://127.0.0.1:$port/?pinnedCards=&tagFilter=charts#timeseries"
echo "wrote docs/figures/tensorboard.png (the training was still running: $(tail -c 200 "$work/train.log" | tr '\r' '\n' | tail -1))"
