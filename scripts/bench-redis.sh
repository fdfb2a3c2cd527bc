#!/usr/bin/env bash
# The HTTP bench (`credpool bench --http`) against `credpool serve` on the
# embedded store and on Redis, in one run, so the figures compare:
#   embedded        one server, redb on disk
#   redis-everysec  one server over Redis, appendonly yes, appendfsync everysec
#   redis-always    the same with appendfsync always
#   lead-everysec   --advertise: leadership, fenced writes, leases and
#                   reports durable in Redis before the answer (everysec)
#   lead-always     the same with appendfsync always
# Prints one line per mode: pairs/s, p50 and p99 of an acquire+report pair,
# and pairs/s as a share of the embedded store's.
#
#   scripts/bench-redis.sh               # 8 connections, 5 s a phase
#   CONC=32 SECS=10 scripts/bench-redis.sh
#   CREDPOOL_BIN=target/release/credpool scripts/bench-redis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CREDPOOL_BIN:-target/debug/credpool}
SECS=${SECS:-5}
CONC=${CONC:-8}
MODES=${MODES:-"embedded redis-everysec redis-always lead-everysec lead-always"}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() { # fsync policy -> port
  local port dir
  port=$(free_port)
  dir="$work/redis-$1"
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync "$1" --dir "$dir" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli -p "$port" PING >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$port"
}

base=""
printf '%-16s %10s %10s %10s %8s\n' mode pairs/s p50_us p99_us share
for mode in $MODES; do
  dir="$work/$mode"
  mkdir -p "$dir"
  "$BIN" --data-dir "$dir/data" init >/dev/null
  token=$("$BIN" --data-dir "$dir/data" token create --tenant default --role admin | tail -1)
  port=$(free_port)
  args=(--listen "127.0.0.1:$port" --rate-limit 0)
  case $mode in
    embedded) ;;
    redis-*|lead-*)
      rport=$(start_redis "${mode#*-}")
      args=(--store "redis://127.0.0.1:$rport/0" "${args[@]}")
      ;;
  esac
  case $mode in
    lead-*) args+=(--advertise "http://127.0.0.1:$port") ;;
  esac
  "$BIN" --data-dir "$dir/data" serve "${args[@]}" 2>"$dir/serve.log" &
  pids+=($!)
  for _ in $(seq 600); do
    grep -q "serving on" "$dir/serve.log" 2>/dev/null && break
    sleep 0.1
  done
  case $mode in
    lead-*)
      for _ in $(seq 300); do
        curl -s "http://127.0.0.1:$port/v1/health" | grep -q '"leader":true' && break
        sleep 0.1
      done ;;
  esac
  out=$("$BIN" bench --http "127.0.0.1:$port" --token "$token" --concurrency "$CONC" \
    --seconds "$SECS" --seed "$((CONC * 2))" --json)
  read -r per p50 p99 < <(python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); p=d["pairs"]; print(round(p["per_sec"]), round(p["p50_us"]), round(p["p99_us"]))' <<<"$out")
  [ -z "$base" ] && base=$per
  share=$(python3 -c "print(f'{$per/$base:.2f}')")
  printf '%-16s %10s %10s %10s %8s\n' "$mode" "$per" "$p50" "$p99" "$share"
done
