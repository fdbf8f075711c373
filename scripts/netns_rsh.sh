#!/usr/bin/env bash
# Open MPI's "remote shell" for the namespace cluster of scripts/netns_cluster.sh (its `mpirun` passes
# `--mca plm_rsh_agent` pointing here): where mpirun would run `ssh HOST COMMAND...`, this runs COMMAND in the
# network namespace that owns the address HOST, through /bin/sh as ssh's remote side would (Open MPI quotes some
# arguments, the contact URI of mpirun among them, for that shell, and may prefix `VAR=...; export VAR;`).
#
# Usage (by mpirun): netns_rsh.sh [ssh options] HOST COMMAND...
# Reads NETNS_STATE_DIR/nodes ("ADDRESS NAMESPACE" lines, written by `netns_cluster.sh up`); gives the node its own
# TMPDIR, NETNS_STATE_DIR/tmp/NAMESPACE, so that the daemons of different nodes never share session files.
set -euo pipefail

state_dir="${NETNS_STATE_DIR:-/run/tessera-netns}"
# Open MPI adds ssh options only for an agent named ssh; skip any anyway.
while [[ $# -gt 0 && "$1" == -* ]]; do shift; done
if [[ $# -lt 2 ]]; then
  echo "netns_rsh: usage: $0 [ssh options] HOST COMMAND..." >&2
  exit 2
fi
host="$1"
shift
[[ -r "$state_dir/nodes" ]] || {
  echo "netns_rsh: no $state_dir/nodes: is the cluster up (scripts/netns_cluster.sh up)?" >&2
  exit 2
}
ns="$(awk -v h="$host" '$1 == h { print $2; exit }' "$state_dir/nodes")"
if [[ -z "$ns" ]]; then
  echo "netns_rsh: '$host' is not a node address in $state_dir/nodes (the hostfile names nodes by address)" >&2
  exit 2
fi
mkdir -p "$state_dir/tmp/$ns"
exec ip netns exec "$ns" env TMPDIR="$state_dir/tmp/$ns" /bin/sh -c "$*"
