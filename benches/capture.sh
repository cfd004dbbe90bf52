#!/usr/bin/env bash
# Live-capture benchmark: replays a large capture onto `lo` at full speed with
# tcpreplay while `netwatch capture` and `tcpdump -w` capture it side by side,
# then prints the packets each captured and dropped.
#
#   sudo benches/capture.sh            # defaults below
#   COPIES=30 LOOPS=3 BUFFER_KIB=8192 sudo -E benches/capture.sh
#
# The replayed capture is built from the shared corpus file
# pcapplusplus__tls2.pcap: its IPv4 packets (lo is an Ethernet-framed link, so
# frames are replayed as they are; their MAC addresses are not lo's, so the
# kernel marks them PACKET_OTHERHOST and the IP stack ignores them: no replies
# pollute the measurement), in COPIES copies, copy k rewritten into
# 127.(96+k).0.0/16 with tcprewrite's --pnat, concatenated with mergecap.
# Both captures use the same filter (the copies' address block) and kernel
# buffer size. Needs root, tcpdump, mergecap (wireshark-common / tshark) and
# tcpreplay (installed with apt when missing).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${SRC:-$ROOT/../shared/corpus/pcap-bulk/pcapplusplus__tls2.pcap}
COPIES=${COPIES:-20}
LOOPS=${LOOPS:-2}
BUFFER_KIB=${BUFFER_KIB:-4096}
IFACE=lo

[ "$(id -u)" = 0 ] || { echo "capture.sh: run as root (capturing and replaying on lo need CAP_NET_RAW/CAP_NET_ADMIN)" >&2; exit 1; }
[ -f "$SRC" ] || { echo "capture.sh: $SRC not found (the shared corpus must sit beside the repository)" >&2; exit 1; }
(( COPIES >= 1 && COPIES <= 32 )) || { echo "capture.sh: COPIES must be 1..32" >&2; exit 1; }
if ! command -v tcpreplay >/dev/null || ! command -v tcprewrite >/dev/null; then
  echo "installing tcpreplay..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpreplay >/dev/null
fi
for t in tcpdump mergecap; do
  command -v $t >/dev/null || { echo "capture.sh: $t is missing (apt-get install tcpdump tshark)" >&2; exit 1; }
done

if [ -z "${BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --locked --bin netwatch -q)
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/netwatch
fi

WORK=$(mktemp -d /tmp/netwatch-capture-bench.XXXXXX)
NW_PID=""; TD_PID=""
cleanup() {
  [ -n "$NW_PID" ] && kill -INT "$NW_PID" 2>/dev/null || true
  [ -n "$TD_PID" ] && kill -INT "$TD_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building the replay file ($COPIES copies of the IPv4 packets of $(basename "$SRC"))"
tcpdump -r "$SRC" -w "$WORK/v4.pcap" ip 2>/dev/null
parts=()
for k in $(seq 0 $((COPIES - 1))); do
  tcprewrite --infile="$WORK/v4.pcap" --outfile="$WORK/part$k.pcap" \
    --pnat="0.0.0.0/0:127.$((96 + k)).0.0/16" --fixcsum
  parts+=("$WORK/part$k.pcap")
done
mergecap -a -F pcap -w "$WORK/replay.pcap" "${parts[@]}"
rm -f "${parts[@]}"
PER_LOOP=$(tcpdump -r "$WORK/replay.pcap" -nn 2>/dev/null | wc -l)
echo "   $PER_LOOP packets, $(stat -c %s "$WORK/replay.pcap") bytes, replayed $LOOPS times"

FILTER="localIPAddress=127.96.0.0-127.127.255.255"
EXPR="net 127.96.0.0/11"
SENT=$((PER_LOOP * LOOPS))
echo "   netwatch BPF: $("$BIN" capture --print-bpf -i "$IFACE" --filter "$FILTER")"
echo "   tcpdump BPF:  $EXPR"
RESULTS=()

# One round: netwatch (with extra options $2...) and tcpdump side by side.
round() {
  local label=$1; shift
  rm -f "$WORK"/nw.* "$WORK"/td.* "$WORK"/*.cap
  "$BIN" capture -i "$IFACE" -w "$WORK/netwatch.cap" --filter "$FILTER" \
    --buffer-size $((BUFFER_KIB * 1024)) --status-file "$WORK/nw.status" "$@" \
    >"$WORK/nw.json" 2>"$WORK/nw.err" &
  NW_PID=$!
  tcpdump -i "$IFACE" -B "$BUFFER_KIB" -w "$WORK/tcpdump.cap" "$EXPR" 2>"$WORK/td.err" &
  TD_PID=$!
  for _ in $(seq 1 200); do
    [ -f "$WORK/nw.status" ] && grep -q "listening on" "$WORK/td.err" && break
    sleep 0.05
  done
  echo "== round '$label': tcpreplay --topspeed --loop=$LOOPS on $IFACE"
  tcpreplay -i "$IFACE" --topspeed --loop="$LOOPS" "$WORK/replay.pcap" >"$WORK/replay.out" 2>&1
  grep -E "Actual|Rated" "$WORK/replay.out" | sed 's/^ */   /'
  sleep 1
  kill -INT "$NW_PID"; wait "$NW_PID" || true; NW_PID=""
  kill -INT "$TD_PID"; wait "$TD_PID" || true; TD_PID=""
  local nw_cap nw_drop nw_if td_cap td_drop td_if nw_file td_file
  nw_get() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" "$WORK/nw.json"; }
  td_get() { sed -n "s/^\([0-9]*\) packets\{0,1\} $1.*/\1/p" "$WORK/td.err"; }
  nw_cap=$(nw_get packetsCaptured); nw_drop=$(nw_get packetsDroppedByKernel); nw_if=$(nw_get packetsDroppedByInterface)
  td_cap=$(td_get captured); td_drop=$(td_get "dropped by kernel"); td_if=$(td_get "dropped by interface")
  nw_file=$(tcpdump -r "$WORK/netwatch.cap" -nn 2>/dev/null | wc -l)
  td_file=$(tcpdump -r "$WORK/tcpdump.cap" -nn 2>/dev/null | wc -l)
  RESULTS+=("$(printf "%-26s %10s %10s %14s %12s" "netwatch $label" "$nw_cap" "$nw_file" "$nw_drop" "${nw_if:-0}")")
  RESULTS+=("$(printf "%-26s %10s %10s %14s %12s" "tcpdump (same round)" "$td_cap" "$td_file" "${td_drop:-?}" "${td_if:-0}")")
}

round "block mode (default)"
round "--immediate" --immediate

echo "== results: $SENT packets replayed per round; kernel buffer ${BUFFER_KIB} KiB for each capture"
printf "   %-26s %10s %10s %14s %12s\n" capture captured in_file dropped_kernel dropped_if
for r in "${RESULTS[@]}"; do echo "   $r"; done
