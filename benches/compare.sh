#!/usr/bin/env bash
# Offline throughput comparison: `netwatch flows` and `netwatch evaluate`
# (1k-rule NSG) against cat, tcpdump, softflowd, nfpcapd and argus on one
# large capture read from the page cache (issue "Rule evaluation on pcap
# files", point 3).
#
#   benches/compare.sh                    # COPIES=80 (~600k packets, ~230 MB, ~27k TCP flows), RUNS=3
#   SMALL=1 benches/compare.sh            # quick check: COPIES=4, RUNS=1
#   COPIES=40 RUNS=5 benches/compare.sh
#   BIN=/path/to/netwatch KEEP=1 benches/compare.sh
#
# Environment:
#   COPIES  rewritten copies of the corpus file in the capture (default 80)
#   RUNS    timed runs per tool; the median is reported (default 3)
#   MERGE   chrono (default: copies interleaved by timestamp, as on one busy
#           link) or concat (mergecap -a: copies one after the other)
#   SRC     source capture (default shared/corpus/pcap-bulk/pcapplusplus__tls2.pcap)
#   RULES   ClassBench rule file (default shared/corpus/classbench/neurocuts__acl1_1k)
#   BIN     netwatch binary (default: cargo build --release, in CARGO_TARGET_DIR)
#   KEEP    keep the work directory (capture, resources, outputs)
#   CACHE   reread (default: drop the capture from the page cache, read it
#           back) or asis (see "warming the page cache" below)
#   WORK    work directory to use (and reuse: an existing capture.pcap of
#           the same COPIES/MERGE is not rebuilt)
#
# The capture: copy k of the source is `tcprewrite --seed k` (every copy gets
# its own random addresses, so its own flows), merged with mergecap.
# The NSG: each of the first 500 ClassBench rules becomes one inbound and one
# outbound rule (priorities 100..; protocol Tcp/Udp/Icmp/*; every 4th rule
# Deny) of the NIC's NSG: 1,000 rules, the most Azure allows in an NSG (spec
# §1.8; until session 11 all 942 rules of acl1_1k, 1,884 in one NSG, which
# Azure and netwatch refuse), beside a VNet, subnet, NIC and VM; `--local 0.0.0.0/1 --local ::/1`
# makes about half of the flows outbound and half inbound (the corpus file
# carries IPv4 and IPv6 flows). softflowd runs with -6 so that it tracks the
# IPv6 packets too (without it, it skips them as "non-IP").
#
# Timing: RUNS rounds, each tool once per round in turn (so a noisy moment
# falls on all tools alike); wall clock of each command (date +%s%N), outputs to /dev/null, with
# the capture in the page cache (read twice before the first timed run); CPU
# time (user+sys) and peak RSS from /usr/bin/time. On a shared, loaded machine
# the CPU column is the steadier one; the targets use the wall-clock medians. Targets checked at the end (exit status 0 either
# way; TARGETS=strict makes a miss exit 2):
#   - netwatch evaluate at least 5x faster than softflowd -r
#   - netwatch evaluate no more than 2x the time of cat
#   - netwatch peak RSS under 64 MiB
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
SRC=${SRC:-$SHARED/corpus/pcap-bulk/pcapplusplus__tls2.pcap}
RULES=${RULES:-$SHARED/corpus/classbench/neurocuts__acl1_1k}
if [ -n "${SMALL:-}" ]; then
  COPIES=${COPIES:-4}
  RUNS=${RUNS:-1}
fi
COPIES=${COPIES:-80}
RUNS=${RUNS:-3}
MERGE=${MERGE:-chrono}
TARGETS=${TARGETS:-report}

die() { echo "compare.sh: $*" >&2; exit 1; }
[ -f "$SRC" ] || die "$SRC not found (the shared corpus must sit beside the repository, or set SRC)"
[ -f "$RULES" ] || die "$RULES not found (set RULES)"
[[ "$COPIES" =~ ^[0-9]+$ ]] && (( COPIES >= 1 && COPIES <= 1000 )) || die "COPIES must be 1..1000"
[[ "$RUNS" =~ ^[0-9]+$ ]] && (( RUNS >= 1 )) || die "RUNS must be >= 1"
case "$MERGE" in chrono|concat) ;; *) die "MERGE must be chrono or concat" ;; esac

# ---------------------------------------------------------------- tools
need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need tcprewrite tcpreplay
need mergecap wireshark-common
need tcpdump tcpdump
need softflowd softflowd
need nfpcapd nfdump
need argus argus-server
need python3 python3
[ -x /usr/bin/time ] || need_pkgs+=(time)
if (( ${#need_pkgs[@]} )); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing ${need_pkgs[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "compare.sh: missing packages ${need_pkgs[*]} (not root: tools without them are skipped)" >&2
  fi
fi
for t in tcprewrite mergecap python3; do
  command -v $t >/dev/null || die "$t is required to build the capture"
done
[ -x /usr/bin/time ] || die "/usr/bin/time (package time) is required"

if [ -z "${BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p netwatch)
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/netwatch
fi
[ -x "$BIN" ] || die "$BIN is not executable"

if [ -n "${WORK:-}" ]; then
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/netwatch-compare.XXXXXX)
fi
SINK_PID=""
cleanup() {
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
  if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "(kept $WORK)"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- 1. capture
CAP=$WORK/capture.pcap
STAMP="$COPIES $MERGE $(stat -c %s "$SRC")"
if [ -f "$CAP" ] && [ "$(cat "$WORK/capture.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "== reusing $CAP"
else
  echo "== building the capture: $COPIES copies of $(basename "$SRC") (tcprewrite --seed k, mergecap, $MERGE)"
  mkdir -p "$WORK/parts"
  parts=()
  for k in $(seq 1 "$COPIES"); do
    tcprewrite --seed="$k" --infile="$SRC" --outfile="$WORK/parts/p$k.pcap"
    parts+=("$WORK/parts/p$k.pcap")
  done
  margs=(-F pcap -w "$CAP")
  [ "$MERGE" = concat ] && margs=(-a "${margs[@]}")
  mergecap "${margs[@]}" "${parts[@]}"
  rm -rf "$WORK/parts"
  echo "$STAMP" >"$WORK/capture.stamp"
fi
CAP_BYTES=$(stat -c %s "$CAP")

# ---------------------------------------------------------------- 2. resources
RES=$WORK/resources
rm -rf "$RES"; mkdir -p "$RES/rg-bench"
python3 - "$RULES" "$RES/rg-bench" <<'PY'
import json, sys
rules_path, out = sys.argv[1], sys.argv[2]
sub = "00000000-0000-4000-8000-0000000b3c40"
rg = f"/subscriptions/{sub}/resourceGroups/rg-bench"
net = f"{rg}/providers/Microsoft.Network"
loc = "westeurope"

def prefix(p):
    return "*" if p.endswith("/0") else p

def ports(lo, hi):
    lo, hi = int(lo), int(hi)
    if lo == 0 and hi == 65535:
        return "*"
    return str(lo) if lo == hi else f"{lo}-{hi}"

PROTO = {0x06: "Tcp", 0x11: "Udp", 0x01: "Icmp"}
rules = []
with open(rules_path) as f:
    lines = [l for l in f if l.startswith("@")]
# Azure allows at most 1,000 rules in an NSG (spec §1.8), which netwatch
# enforces: the first 500 ClassBench rules, each inbound and outbound.
lines = lines[:500]
for i, line in enumerate(lines):
    c = line[1:].rstrip("\n").split("\t")
    src, dst = prefix(c[0]), prefix(c[1])
    sp = ports(*[x.strip() for x in c[2].split(":")])
    dp = ports(*[x.strip() for x in c[3].split(":")])
    pv, pm = [int(x, 16) for x in c[4].split("/")]
    proto = "*" if pm == 0 else PROTO.get(pv, "*")
    access = "Deny" if i % 4 == 3 else "Allow"
    for direction in ("Inbound", "Outbound"):
        name = f"cb{i:04d}-{direction[:2].lower()}"
        rules.append({
            "name": name,
            "id": f"{net}/networkSecurityGroups/nsg-bench/securityRules/{name}",
            "type": "Microsoft.Network/networkSecurityGroups/securityRules",
            "properties": {
                "provisioningState": "Succeeded",
                "protocol": proto, "access": access, "priority": 100 + i, "direction": direction,
                "sourceAddressPrefix": src, "destinationAddressPrefix": dst,
                "sourcePortRange": sp, "destinationPortRange": dp,
                "sourceAddressPrefixes": [], "destinationAddressPrefixes": [],
                "sourcePortRanges": [], "destinationPortRanges": [],
            },
        })
nsg_id = f"{net}/networkSecurityGroups/nsg-bench"
vnet_id = f"{net}/virtualNetworks/vnet-bench"
subnet_id = f"{vnet_id}/subnets/snet-bench"
nic_id = f"{net}/networkInterfaces/nic-bench"
vm_id = f"/subscriptions/{sub}/resourceGroups/rg-bench/providers/Microsoft.Compute/virtualMachines/vm-bench"
docs = {
    "networkSecurityGroups.json": [{
        "name": "nsg-bench", "id": nsg_id, "type": "Microsoft.Network/networkSecurityGroups", "location": loc,
        "properties": {"provisioningState": "Succeeded", "securityRules": rules,
                        "networkInterfaces": [{"id": nic_id}]},
    }],
    "virtualNetworks.json": [{
        "name": "vnet-bench", "id": vnet_id, "type": "Microsoft.Network/virtualNetworks", "location": loc,
        "properties": {"provisioningState": "Succeeded", "addressSpace": {"addressPrefixes": ["10.200.0.0/16"]},
                        "subnets": [{"name": "snet-bench", "id": subnet_id,
                                     "type": "Microsoft.Network/virtualNetworks/subnets",
                                     "properties": {"provisioningState": "Succeeded", "addressPrefix": "10.200.1.0/24"}}],
                        "virtualNetworkPeerings": []},
    }],
    "networkInterfaces.json": [{
        "name": "nic-bench", "id": nic_id, "type": "Microsoft.Network/networkInterfaces", "location": loc,
        "properties": {"provisioningState": "Succeeded",
                        "ipConfigurations": [{"name": "ipconfig1", "id": f"{nic_id}/ipConfigurations/ipconfig1",
                                              "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                                              "properties": {"provisioningState": "Succeeded", "privateIPAddress": "10.200.1.4",
                                                             "privateIPAllocationMethod": "Static", "privateIPAddressVersion": "IPv4",
                                                             "subnet": {"id": subnet_id}, "primary": True}}],
                        "primary": True, "enableIPForwarding": False,
                        "virtualMachine": {"id": vm_id}, "networkSecurityGroup": {"id": nsg_id}},
    }],
    "virtualMachines.json": [{
        "name": "vm-bench", "id": vm_id, "type": "Microsoft.Compute/virtualMachines", "location": loc,
        "properties": {"provisioningState": "Succeeded",
                        "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]}},
    }],
}
for fname, value in docs.items():
    with open(f"{out}/{fname}", "w") as f:
        json.dump({"value": value}, f)
print(f"   NSG nsg-bench: {len(lines)} ClassBench rules -> {len(rules)} security rules")
PY

# ---------------------------------------------------------------- 3. timing
TAGS=()
[ -f "$ROOT/demo/ServiceTags_Demo.json" ] && TAGS=(--service-tags "$ROOT/demo/ServiceTags_Demo.json")
EVAL=("$BIN" evaluate --resources "$RES" "${TAGS[@]}" --nic nic-bench --local 0.0.0.0/1 --local ::/1 "$CAP" -o jsonl)
FLOWS=("$BIN" flows "$CAP" -o jsonl)

echo "== checking the netwatch runs"
"${FLOWS[@]}" >"$WORK/flows.jsonl" 2>"$WORK/flows.err" || { cat "$WORK/flows.err" >&2; die "netwatch flows failed"; }
"${EVAL[@]}" >"$WORK/eval.jsonl" 2>"$WORK/eval.err" || { cat "$WORK/eval.err" >&2; die "netwatch evaluate failed"; }
NFLOWS=$(wc -l <"$WORK/flows.jsonl")
NPKTS=$(python3 - "$CAP" <<'PY'
import struct, sys
n = 0
with open(sys.argv[1], "rb") as f:
    e = "<" if f.read(24)[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    while True:
        h = f.read(16)
        if len(h) < 16: break
        f.seek(struct.unpack(e + "IIII", h)[2], 1); n += 1
print(n)
PY
)
echo "   $NPKTS packets, $CAP_BYTES bytes, $NFLOWS flow records (netwatch flows)"
python3 - "$WORK/eval.jsonl" <<'PY'
import json, sys, collections
c = collections.Counter()
for l in open(sys.argv[1]):
    r = json.loads(l); c[(r.get("direction", "transit"), r.get("access", "-"))] += 1
print("   evaluate verdicts: " + ", ".join(f"{d}/{a} {n}" for (d, a), n in sorted(c.items())))
PY

# softflowd exports NetFlow to a UDP port on loopback: a local sink drains it
# (so no ICMP port-unreachable turns its sends into errors).
SINK_PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
while True: s.recv(65536)' "$SINK_PORT" &
SINK_PID=$!

NF_DIR=$WORK/nfcapd
NF_FLAG=-l
if command -v nfpcapd >/dev/null && nfpcapd -h 2>&1 | grep -qE '^\s*-w\s'; then NF_FLAG=-w; fi

# name|command (eval'd in a subshell; stdout and stderr to files)
TOOLS=()
TOOLS+=("cat|cat '$CAP'")
command -v tcpdump >/dev/null && TOOLS+=("tcpdump -r -w /dev/null|tcpdump -r '$CAP' -w /dev/null")
TOOLS+=("netwatch flows|$(printf '%q ' "${FLOWS[@]}")")
TOOLS+=("netwatch evaluate|$(printf '%q ' "${EVAL[@]}")")
command -v softflowd >/dev/null && TOOLS+=("softflowd -r|softflowd -6 -r '$CAP' -n 127.0.0.1:$SINK_PORT")
command -v nfpcapd >/dev/null && TOOLS+=("nfpcapd -r|rm -rf '$NF_DIR' && mkdir -p '$NF_DIR' && nfpcapd -r '$CAP' $NF_FLAG '$NF_DIR'")
command -v argus >/dev/null && TOOLS+=("argus -r|argus -r '$CAP' -w /dev/null")

# How the page cache holds a file changes how fast every tool reads it: a
# file read from disk is cached in large folios by read-ahead (Linux 6.x,
# ext4/xfs), which `read` copies out about twice as fast as the small pages
# a file written piece by piece can be left in (measured here: cat 0.025-0.030 s
# against 0.045-0.060 s for this capture). CACHE=reread (default) drops the
# capture from the cache and reads it back, so every run measures the same
# state, the one of a capture copied off a disk; CACHE=asis keeps whatever
# state building the capture left.
CACHE=${CACHE:-reread}
echo "== warming the page cache (CACHE=$CACHE)"
case "$CACHE" in
  reread) dd if="$CAP" iflag=nocache count=0 status=none 2>/dev/null || echo "   (could not drop the capture from the cache: state as is)" ;;
  asis) ;;
  *) die "CACHE must be reread or asis" ;;
esac
cat "$CAP" >/dev/null; cat "$CAP" >/dev/null

now_ns() { date +%s%N; }
# One line of phase times (ms) from a `netwatch -vv` run's stderr.
phases() {
  awk '
    function t() { v = $1; sub(/s$/, "", v); return v * 1000 }
    /resources loaded/ { load = t() }
    /NSG rules compiled/ { comp = t() }
    /decoding thread done/ { dec = t() }
    /capture read/ { trk = t() }
    /DEBUG done/ { done = t() }
    END { printf "%.1f %.1f %.1f %.1f %.1f\n", load, comp, dec, trk, done }'
}
rm -f "$WORK/phases.eval" "$WORK/phases.flows"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
declare -A MEDIAN RSS CPU TIMES CPUS FAILED
echo "== timing ($RUNS rounds, each tool once per round in turn; medians)"
# Rounds rather than all runs of one tool then the next: a noisy moment on a
# shared machine then falls on every tool alike, not on one.
for r in $(seq 1 "$RUNS"); do
  for entry in "${TOOLS[@]}"; do
    name=${entry%%|*}; cmd=${entry#*|}
    [ -n "${FAILED[$name]:-}" ] && continue
    t0=$(now_ns)
    if ! /usr/bin/time -f '%M %U %S' -o "$WORK/rss" bash -c "$cmd" >/dev/null 2>"$WORK/err"; then
      echo "   $name failed:" >&2; tail -5 "$WORK/err" >&2
      FAILED[$name]=1
      continue
    fi
    t1=$(now_ns)
    TIMES[$name]+="$(( t1 - t0 )) "
    read -r rss u s < <(tail -1 "$WORK/rss")
    (( rss > ${RSS[$name]:-0} )) && RSS[$name]=$rss
    CPUS[$name]+="$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%d", (u+s)*1000}') "
  done
  # Where the time goes: one untimed -vv run of each netwatch command per
  # round, its debug lines' times (seconds since logging started).
  # (bash's `time`: CPU to the millisecond, where /usr/bin/time gives 10 ms.)
  for which in eval flows; do
    if [ "$which" = eval ]; then cmd=("${EVAL[0]}" -vv "${EVAL[@]:1}"); else cmd=("${FLOWS[0]}" -vv "${FLOWS[@]:1}"); fi
    cpu=$( { TIMEFORMAT='%3U %3S'; time "${cmd[@]}" >/dev/null 2>"$WORK/vv.err"; } 2>&1 ) || continue
    printf '%s %s\n' "$(phases <"$WORK/vv.err")" "$(awk -v u="${cpu% *}" -v s="${cpu#* }" 'BEGIN{printf "%.1f", (u+s)*1000}')" >>"$WORK/phases.$which"
  done
done
for entry in "${TOOLS[@]}"; do
  name=${entry%%|*}
  [ -n "${FAILED[$name]:-}" ] && { unset 'RSS[$name]'; continue; }
  [ -n "${TIMES[$name]:-}" ] || continue
  MEDIAN[$name]=$(printf '%s\n' ${TIMES[$name]} | median)
  CPU[$name]=$(printf '%s\n' ${CPUS[$name]} | median)
  printf '   %-26s %8.3f s  (%s)\n' "$name" "$(awk -v n="${MEDIAN[$name]}" 'BEGIN{print n/1e9}')" \
    "$(printf '%s\n' ${TIMES[$name]} | awk '{printf "%s%.3f", (NR>1?" ":""), $1/1e9}')"
done

# ---------------------------------------------------------------- 4. report
EV=${MEDIAN["netwatch evaluate"]:-}
CAT=${MEDIAN[cat]}
echo
echo "Capture: $NPKTS packets, $((CAP_BYTES / 1000000)) MB, $NFLOWS flows ($COPIES copies, $MERGE); NSG: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["value"][0]["properties"]["securityRules"]))' "$RES/rg-bench/networkSecurityGroups.json") rules; median of $RUNS runs"
echo
echo "| tool | median s | x cat | netwatch evaluate speed-up | Mpkt/s | CPU s (user+sys) | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for entry in "${TOOLS[@]}"; do
  name=${entry%%|*}
  [ -n "${MEDIAN[$name]:-}" ] || continue
  m=${MEDIAN[$name]}
  awk -v n="$name" -v m="$m" -v c="$CAT" -v e="${EV:-0}" -v p="$NPKTS" -v r="${RSS[$name]}" -v u="${CPU[$name]}" 'BEGIN {
    printf "| %s | %.3f | %.2f | %s | %.2f | %.2f | %.1f |\n", n, m/1e9, m/c, (e>0 ? sprintf("%.2fx", m/e) : "-"), p/(m/1e3), u/1000, r/1024 }'
done
echo

# The phases of the -vv runs, and the bound they set: the decoding thread
# reads and decodes the whole capture alone (in `flows` it does nothing
# else), and at best the rest of `evaluate` hides behind it on the other
# core; with both cores busy, the run cannot be shorter than half its CPU.
col() { awk -v c="$1" '{print $c}' "$2" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
if [ -s "$WORK/phases.eval" ] && [ -s "$WORK/phases.flows" ]; then
  echo "Where the time goes (netwatch -vv, one untimed run per round, medians, ms since logging started):"
  echo "   evaluate: resources loaded $(col 1 "$WORK/phases.eval"), rules compiled $(col 2 "$WORK/phases.eval"), decoding thread done $(col 3 "$WORK/phases.eval"), flows tracked $(col 4 "$WORK/phases.eval"), output done $(col 5 "$WORK/phases.eval")"
  echo "   flows:    decoding thread done $(col 3 "$WORK/phases.flows") ($(awk -v d="$(col 3 "$WORK/phases.flows")" -v c="$CAT" 'BEGIN{printf "%.2f", d*1e6/c}')x cat): reading and decoding alone, one thread"
  echo "   evaluate CPU (user+sys) $(col 6 "$WORK/phases.eval") ms; half of it, the wall time with both cores busy throughout: $(awk -v u="$(col 6 "$WORK/phases.eval")" -v c="$CAT" 'BEGIN{printf "%.1f ms (%.2fx cat)", u/2, u*1e6/2/c}')"
  echo
fi

fail=0
check() { # label ok
  if [ "$2" = 1 ]; then echo "  [met]    $1"; else echo "  [missed] $1"; fail=1; fi
}
echo "Targets:"
if [ -n "$EV" ]; then
  if [ -n "${MEDIAN["softflowd -r"]:-}" ]; then
    check "netwatch evaluate >= 5x faster than softflowd -r ($(awk -v s="${MEDIAN["softflowd -r"]}" -v e="$EV" 'BEGIN{printf "%.2fx", s/e}'))" \
      "$(awk -v s="${MEDIAN["softflowd -r"]}" -v e="$EV" 'BEGIN{print (s >= 5*e) ? 1 : 0}')"
  else
    echo "  [skipped] softflowd not available"
  fi
  check "netwatch evaluate <= 2x cat ($(awk -v c="$CAT" -v e="$EV" 'BEGIN{printf "%.2fx", e/c}'))" \
    "$(awk -v c="$CAT" -v e="$EV" 'BEGIN{print (e <= 2*c) ? 1 : 0}')"
  for n in "netwatch flows" "netwatch evaluate"; do
    [ -n "${RSS[$n]:-}" ] || continue
    check "$n peak RSS < 64 MiB ($(awk -v r="${RSS[$n]}" 'BEGIN{printf "%.1f MiB", r/1024}'))" \
      "$(awk -v r="${RSS[$n]}" 'BEGIN{print (r < 65536) ? 1 : 0}')"
  done
fi
if [ "$fail" = 1 ] && [ "$TARGETS" = strict ]; then exit 2; fi
exit 0
