#!/usr/bin/env bash
# Several "hosts" on this machine for the scaling measurements of docs/distributed.md: N network namespaces (the
# nodes, NETNS_PREFIX-node0..N-1, addresses NETNS_SUBNET.1..N) whose veths meet at a bridge in a namespace of its
# own (NETNS_PREFIX-switch), every link shaped by tc, and Open MPI's mpirun started in node 0 with one rank per node.
# The addresses exist only inside those namespaces. Needs root and iproute2; delays need the kernel's sch_netem.
#
# Usage:
#   scripts/netns_cluster.sh up [N]             create N nodes (default 2; links unshaped); fails if already up
#   scripts/netns_cluster.sh shape RATE DELAY   shape every link: RATE as tc writes it (1gbit, 10gbit, 25gbit) or
#                                               none; DELAY the one-way node-to-node latency (100us, 0.1ms, 1ms) or 0
#   scripts/netns_cluster.sh has-netem          exit status 0 when this kernel can delay packets (sch_netem), else 1
#   scripts/netns_cluster.sh check              a 64 MiB TCP transfer from the last node to node 0 (python3: shows
#                                               the shaped rate), then `mpirun` of one process per node, each of
#                                               which must see a different network namespace
#   scripts/netns_cluster.sh mpirun NP PROGRAM [ARGS...]
#                                               mpirun in node 0 with NP ranks, one per node (see cmd_mpirun)
#   scripts/netns_cluster.sh status             namespaces, addresses and qdiscs
#   scripts/netns_cluster.sh down               remove every namespace and file this script made
# Environment: NETNS_PREFIX (default tessera), NETNS_SUBNET (default 10.77.0, the first three octets of a /24),
# NETNS_STATE_DIR (default /run/tessera-netns: the address -> namespace table `nodes`, the MPI `hostfile`, the
# current `shaping`, and one temporary folder per node), NETNS_ALLOW_NO_DELAY=1 (`shape` with a DELAY on a kernel
# without sch_netem shapes the rate only and records delay 0, instead of failing).
#
# Topology: node k has one veth, tsn<k> (NETNS_SUBNET.<k+1>/24), whose peer tss<k> is a port of bridge br0 in the
# switch namespace. `shape` puts the same qdisc on both ends of every veth, so each direction of each link is
# shaped; a packet from node a to node b leaves through tsn<a> and through tss<b>, so each of them gets half of
# DELAY, and the one-way latency between two nodes is DELAY (round trip 2 x DELAY), the rate RATE in each direction.
# Rate only: tbf (burst max(67 kB, 100 us of RATE): at least a 64 kB GSO packet; queue 32 MiB, so that TCP, which
# may keep megabytes per socket in the qdisc, sees a slow link and never a drop). With a delay: netem's delay and
# rate in one qdisc (queue 100000 packets).
set -Eeuo pipefail

prefix="${NETNS_PREFIX:-tessera}"
subnet="${NETNS_SUBNET:-10.77.0}"
state_dir="${NETNS_STATE_DIR:-/run/tessera-netns}"
switch_ns="$prefix-switch"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "netns_cluster: $*" >&2
  exit 1
}

node_ns() { echo "$prefix-node$1"; }
node_addr() { echo "$subnet.$(($1 + 1))"; }

# The namespaces of this cluster that exist now, one a line.
cluster_namespaces() {
  ip netns list | awk '{ print $1 }' | grep -E "^${prefix}-(node[0-9]+|switch)\$" || true
}

node_count() {
  [[ -f "$state_dir/nodes" ]] || die "no cluster is up (no $state_dir/nodes): run '$0 up' first"
  wc -l <"$state_dir/nodes"
}

require_root_and_tools() {
  [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, tc)"
  command -v ip >/dev/null || die "needs iproute2 (ip)"
  command -v tc >/dev/null || die "needs iproute2 (tc)"
}

cmd_up() {
  local n="${1:-2}" k ns addr
  if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 2 || n > 250)); then die "up: N must be a number from 2 to 250, got '$n'"; fi
  [[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "NETNS_SUBNET must be three octets such as 10.77.0, got '$subnet'"
  [[ -z "$(cluster_namespaces)" ]] || die "a cluster with prefix '$prefix' is up already: run '$0 down' first"
  # From here on, a failed command removes whatever was made.
  trap 'echo "netns_cluster: setting up failed; removing what was made" >&2; cmd_down' ERR
  mkdir -p "$state_dir/tmp"
  : >"$state_dir/nodes"
  : >"$state_dir/hostfile"
  ip netns add "$switch_ns"
  ip -n "$switch_ns" link set lo up
  ip -n "$switch_ns" link add br0 type bridge
  ip -n "$switch_ns" link set br0 up
  # Bridged frames skip the switch's iptables (there are no rules; this saves the conntrack work where the kernel
  # has bridge netfilter).
  ip netns exec "$switch_ns" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
  for ((k = 0; k < n; ++k)); do
    ns="$(node_ns "$k")"
    addr="$(node_addr "$k")"
    ip netns add "$ns"
    # Both ends made in their namespaces at once; older iproute2 without that form: made here, then moved.
    if ! ip link add "tsn$k" netns "$ns" type veth peer name "tss$k" netns "$switch_ns" 2>/dev/null; then
      ip link add "tsn$k" type veth peer name "tss$k"
      ip link set "tsn$k" netns "$ns"
      ip link set "tss$k" netns "$switch_ns"
    fi
    # Loopback up: Open MPI's daemons and their local processes (PMIx) talk over it inside each node.
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev "tsn$k"
    ip -n "$ns" link set "tsn$k" up
    ip -n "$switch_ns" link set "tss$k" master br0
    ip -n "$switch_ns" link set "tss$k" up
    mkdir -p "$state_dir/tmp/$ns"
    echo "$addr $ns" >>"$state_dir/nodes"
    echo "$addr slots=1" >>"$state_dir/hostfile"
  done
  echo "rate=none delay=0" >"$state_dir/shaping"
  trap - ERR
  echo "netns_cluster: $n nodes up ($(node_addr 0) .. $(node_addr $((n - 1))), bridge in $switch_ns), unshaped"
}

cmd_down() {
  local ns
  while read -r ns; do
    [[ -n "$ns" ]] && ip netns del "$ns"
  done < <(cluster_namespaces)
  rm -rf "${state_dir:?}"
  echo "netns_cluster: down (namespaces '$prefix-*' and $state_dir removed)"
}

# RATE in bits per second (0 for none), from tc's notation: 1gbit, 10gbit, 500mbit, 100kbit.
rate_bits() {
  local rate="$1"
  [[ "$rate" == none ]] && {
    echo 0
    return
  }
  [[ "$rate" =~ ^([0-9]+(\.[0-9]+)?)(kbit|mbit|gbit)$ ]] ||
    die "RATE must look like 1gbit, 10gbit, 500mbit or be none, got '$rate'"
  awk -v v="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[3]}" \
    'BEGIN { m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : 1e9; printf "%.0f\n", v * m }'
}

# DELAY in microseconds (0 for none), from 100us, 0.1ms, 1ms, 0.
delay_us() {
  local delay="$1"
  [[ "$delay" == 0 || "$delay" == none ]] && {
    echo 0
    return
  }
  [[ "$delay" =~ ^([0-9]+(\.[0-9]+)?)(us|ms)$ ]] || die "DELAY must look like 100us, 0.1ms, 1ms or be 0, got '$delay'"
  awk -v v="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[3]}" 'BEGIN { printf "%g\n", (u == "ms") ? v * 1000 : v }'
}

# Whether tc can add a netem qdisc here (a kernel without sch_netem answers "Specified qdisc kind is unknown").
netem_available() {
  # Tried on the switch's bridge device, which carries no shaped traffic, so the links keep their qdiscs.
  if ip netns exec "$switch_ns" tc qdisc replace dev br0 root netem delay 1ms 2>/dev/null; then
    ip netns exec "$switch_ns" tc qdisc del dev br0 root 2>/dev/null || true
    return 0
  fi
  return 1
}

cmd_has_netem() {
  node_count >/dev/null
  if netem_available; then
    echo "netns_cluster: netem available (delays can be simulated)"
    return 0
  fi
  echo "netns_cluster: netem NOT available: this kernel has no sch_netem; rates can be shaped (tbf), delays cannot"
  return 1
}

# The qdisc of one end of a link: $1 namespace, $2 device, $3 rate (tc notation or none), $4 rate in bit/s,
# $5 delay of this end in microseconds (0: none).
apply_qdisc() {
  local ns="$1" dev="$2" rate="$3" bits="$4" half_us="$5" burst
  ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null || true
  if [[ "$half_us" != 0 ]]; then
    local rate_args=()
    [[ "$rate" != none ]] && rate_args=(rate "$rate")
    ip netns exec "$ns" tc qdisc add dev "$dev" root netem delay "${half_us}us" "${rate_args[@]}" limit 100000
  elif [[ "$rate" != none ]]; then
    burst="$(awk -v b="$bits" 'BEGIN { x = b / 8 * 100e-6; printf "%.0f\n", (x > 67000) ? x : 67000 }')"
    ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" limit $((32 << 20))
  fi
}

cmd_shape() {
  [[ $# -eq 2 ]] || die "usage: $0 shape RATE DELAY   (for example: shape 1gbit 0.1ms; shape none 0)"
  local rate="$1" delay="$2" n bits us half applied_delay="$2" k
  n="$(node_count)"
  bits="$(rate_bits "$rate")"
  us="$(delay_us "$delay")"
  if [[ "$us" != 0 ]] && ! netem_available; then
    if [[ "${NETNS_ALLOW_NO_DELAY:-0}" == 1 ]]; then
      echo "netns_cluster: WARNING: no sch_netem in this kernel: DELAY $delay NOT applied, rate only" >&2
      us=0
      applied_delay=0
    else
      die "DELAY $delay needs sch_netem, which this kernel lacks (set NETNS_ALLOW_NO_DELAY=1 to shape the rate only)"
    fi
  fi
  half="$(awk -v u="$us" 'BEGIN { printf "%g\n", u / 2 }')"
  for ((k = 0; k < n; ++k)); do
    apply_qdisc "$(node_ns "$k")" "tsn$k" "$rate" "$bits" "$half"
    apply_qdisc "$switch_ns" "tss$k" "$rate" "$bits" "$half"
  done
  [[ "$applied_delay" == none ]] && applied_delay=0
  echo "rate=$rate delay=$applied_delay" >"$state_dir/shaping"
  echo "netns_cluster: every link shaped: rate $rate, one-way delay $applied_delay (${half} us on each end)"
}

cmd_status() {
  local addr ns k=0
  node_count >/dev/null
  echo "shaping: $(cat "$state_dir/shaping")"
  while read -r addr ns; do
    echo "$ns $addr:"
    ip netns exec "$ns" tc qdisc show dev "tsn$k" | sed 's/^/  node end:   /'
    ip netns exec "$switch_ns" tc qdisc show dev "tss$k" | sed 's/^/  switch end: /'
    k=$((k + 1))
  done <"$state_dir/nodes"
}

# Open MPI's mpirun in node 0, one rank per node. What this relies on (Open MPI 4.1, Debian 12):
# - The hostfile names the nodes by address. mpirun (in node 0) finds its own address among its interfaces and
#   runs rank 0 itself; for every other address it starts a daemon (orted) through the "remote shell" agent,
#   scripts/netns_rsh.sh, which runs the command in the namespace that owns that address instead of ssh-ing.
#   Open MPI tells daemons apart by their index, never by the hostname they report, so nodes that share this
#   machine's hostname are still different nodes (plm_base_launch_support.c keeps the reported name as an alias).
# - `--mca btl tcp,self --mca pml ob1`: ranks talk over TCP only (no shared-memory transport, which ranks on one
#   machine would otherwise use: they share /dev/shm; no UCX, which Debian's configuration disables anyway), and
#   TCP and Open MPI's own channels use only the cluster's subnet (btl_tcp_if_include, oob_tcp_if_include).
# - Every node has its own TMPDIR (set here for node 0, by netns_rsh.sh for the others): the nodes share /tmp,
#   and two Open MPI daemons of one job would otherwise put their session files (PMIx's shared-memory store among
#   them) at the same paths. PMIX_MCA_gds=hash keeps PMIx's job data out of shared-memory files altogether.
# - No tree spawn: mpirun starts every daemon itself (plm_rsh_no_tree_spawn).
cmd_mpirun() {
  [[ $# -ge 2 ]] || die "usage: $0 mpirun NP PROGRAM [ARGS...]"
  local np="$1" n addr ns
  shift
  n="$(node_count)"
  if ! [[ "$np" =~ ^[0-9]+$ ]] || ((np < 1 || np > n)); then
    die "mpirun: NP must be from 1 to the $n nodes, got '$np'"
  fi
  command -v mpirun >/dev/null || die "needs Open MPI's mpirun (Debian: openmpi-bin)"
  read -r addr ns <"$state_dir/nodes"
  ip netns exec "$ns" env TMPDIR="$state_dir/tmp/$ns" PMIX_MCA_gds=hash NETNS_STATE_DIR="$state_dir" \
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" \
    mpirun -np "$np" --hostfile "$state_dir/hostfile" --map-by node --bind-to none \
    --allow-run-as-root --oversubscribe \
    --mca plm_rsh_agent "$script_dir/netns_rsh.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
    -x OMP_NUM_THREADS -x PMIX_MCA_gds \
    "$@"
}

cmd_check() {
  local n last_ns server status=0
  n="$(node_count)"
  last_ns="$(node_ns $((n - 1)))"
  command -v python3 >/dev/null || die "check: needs python3 for the TCP transfer"
  echo "netns_cluster: check: 64 MiB over TCP from $last_ns to $(node_addr 0) ($(cat "$state_dir/shaping"))"
  ip netns exec "$(node_ns 0)" python3 - 5999 <<'PY' &
import socket, sys, time
port, total = int(sys.argv[1]), 64 << 20
with socket.create_server(("0.0.0.0", port)) as server:
    server.settimeout(30)
    conn, _ = server.accept()
    with conn:
        got, start = 0, None
        while got < total:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            if start is None:
                start = time.perf_counter()
            got += len(chunk)
        elapsed = time.perf_counter() - start if start is not None else 0.0
rate = f"{got * 8 / elapsed / 1e9:.2f} Gbit/s" if elapsed > 0 else "no rate"
print(f"  received {got} bytes in {elapsed:.3f} s: {rate} (timed from the first byte)")
sys.exit(0 if got == total else 1)
PY
  server=$!
  ip netns exec "$last_ns" python3 - "$(node_addr 0)" 5999 <<'PY' || status=1
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 10
while True:
    try:
        conn = socket.create_connection((host, port), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
with conn:
    block = b"\0" * (1 << 20)
    for _ in range(64):
        conn.sendall(block)
PY
  wait "$server" || status=1
  ((status == 0)) || die "check: the TCP transfer failed"
  echo "netns_cluster: check: mpirun -np $n, one process per node, each printing its network namespace"
  local output count distinct line
  output="$(cmd_mpirun "$n" readlink /proc/self/ns/net)" || die "check: mpirun failed"
  while IFS= read -r line; do echo "  $line"; done <<<"$output"
  count="$(grep -c '^net:' <<<"$output" || true)"
  distinct="$(grep '^net:' <<<"$output" | sort -u | wc -l)"
  ((count == n && distinct == n)) || die "check: expected $n processes in $n different network namespaces"
  echo "netns_cluster: check passed"
}

main() {
  [[ $# -ge 1 ]] || die "usage: $0 up [N] | shape RATE DELAY | has-netem | check | mpirun NP PROGRAM [ARGS...] |"\
    "status | down"
  local command="$1"
  shift
  require_root_and_tools
  case "$command" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    shape) cmd_shape "$@" ;;
    has-netem) cmd_has_netem ;;
    check) cmd_check ;;
    mpirun) cmd_mpirun "$@" ;;
    status) cmd_status ;;
    *) die "unknown command '$command' (up, shape, has-netem, check, mpirun, status, down)" ;;
  esac
}

main "$@"
