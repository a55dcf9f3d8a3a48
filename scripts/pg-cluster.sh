#!/usr/bin/env bash
# A replicated log on one machine, for trying it (docs/deployment.md): etcd, three
# PostgreSQL members managed by Patroni (synchronous replication, strict: a commit is
# acknowledged only once a standby has it), and two govern nodes over them, all on
# loopback. `make cluster` installs what it needs and runs `up`.
#
#   scripts/pg-cluster.sh up DIR [--no-nodes]   start (DIR: where everything lives)
#   scripts/pg-cluster.sh down DIR              stop everything started in DIR
#   scripts/pg-cluster.sh status DIR            Patroni's members, and the nodes' parts
#
# Environment: PORT_BASE (default 7700: etcd 7700-7701, PostgreSQL 7710-7712, Patroni's
# REST API 7720-7722, the govern nodes 7730-7731), GOVERN (the govern binary; default: on
# PATH). PostgreSQL refuses to run as root: under root, the database processes run as the
# `postgres` system user Debian's packages create.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,15p' "$0"; exit 2; }
base=${PORT_BASE:-7700}
govern=${GOVERN:-govern}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

dbu=()
[ "$(id -u)" = 0 ] && dbu=(runuser -u postgres --)

storage_url() {
  echo "host=127.0.0.1,127.0.0.1,127.0.0.1 port=$((base + 10)),$((base + 11)),$((base + 12)) user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2 keepalives_idle=5"
}

member_config() { # name index
  local name=$1 i=$2
  cat <<EOF
scope: govern
name: $name
restapi:
  listen: 127.0.0.1:$((base + 20 + i))
  connect_address: 127.0.0.1:$((base + 20 + i))
etcd:
  host: 127.0.0.1:$base
bootstrap:
  dcs:
    # A primary that stops renewing its leader key is replaced after ttl seconds.
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 0
    # Commits wait for a synchronous standby, and only a synchronous standby is promoted;
    # strict: with no standby left, commits wait rather than go unreplicated.
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      parameters:
        synchronous_commit: "on"
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
    - no-locale
  pg_hba:
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
    - local all all trust
postgresql:
  listen: 127.0.0.1:$((base + 10 + i))
  connect_address: 127.0.0.1:$((base + 10 + i))
  data_dir: $dir/$name/data
  bin_dir: $pgbin
  pgpass: $dir/$name/pgpass
  authentication:
    replication:
      username: replicator
      password: replicator
    superuser:
      username: postgres
      password: postgres
  parameters:
    unix_socket_directories: $dir/$name
EOF
}

start_bg() { # name command...
  local name=$1; shift
  nohup "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

wait_for() { # description seconds command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "pg-cluster: $what did not come up within ${secs}s; see $dir/*.log" >&2
  exit 1
}

has_sync_standby() {
  curl -sf "http://127.0.0.1:$((base + 20))/cluster" | grep -q '"role": *"sync_standby"'
}

node_loop() { # index
  # A node that another took the log over from stops (status 75); like a supervisor
  # (systemd's Restart=always), start it again, as a standby.
  local i=$1
  trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM
  while [ -f "$dir/running" ]; do
    "$govern" node --storage "$(storage_url)" --data-dir "$dir/node$i" \
      --listen "127.0.0.1:$((base + 30 + i))" &
    wait $! || true
    sleep 1
  done
}

case "$cmd" in
_node)
  node_loop "$3" ;;
up)
  [ -n "$pgbin" ] || { echo "pg-cluster: no PostgreSQL under /usr/lib/postgresql (apt install postgresql)" >&2; exit 1; }
  command -v patroni >/dev/null || { echo "pg-cluster: no patroni (apt install patroni)" >&2; exit 1; }
  command -v etcd >/dev/null || { echo "pg-cluster: no etcd (apt install etcd-server)" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir"
  for n in etcd pg0 pg1 pg2; do mkdir -p "$dir/$n"; done
  chmod 700 "$dir/pg0" "$dir/pg1" "$dir/pg2"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir/etcd" "$dir/pg0" "$dir/pg1" "$dir/pg2"
  # One etcd member is enough to try it; docs/deployment.md runs three, one per machine.
  start_bg etcd "${dbu[@]}" etcd --name e0 --data-dir "$dir/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$base" --advertise-client-urls "http://127.0.0.1:$base" \
    --listen-peer-urls "http://127.0.0.1:$((base + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((base + 1))" \
    --initial-cluster "e0=http://127.0.0.1:$((base + 1))" --enable-v2=true
  wait_for etcd 30 curl -sf "http://127.0.0.1:$base/health"
  for i in 0 1 2; do
    member_config "pg$i" "$i" >"$dir/pg$i/patroni.yml"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/pg$i/patroni.yml"
    start_bg "patroni$i" "${dbu[@]}" patroni "$dir/pg$i/patroni.yml"
  done
  wait_for "a primary" 120 curl -sf "http://127.0.0.1:$((base + 20))/cluster" -o /dev/null
  wait_for "a synchronous standby" 120 has_sync_standby
  echo "storage: $(storage_url)"
  if [ "${3:-}" != "--no-nodes" ]; then
    touch "$dir/running"
    mkdir -p "$dir/node0"
    # The first node makes its data dir (keys, manifest) and the log; the second is a copy
    # of that data dir: one log key, one edge key, one key service master.
    start_bg node0 "$0" _node "$dir" 0
    wait_for "the first govern node" 60 curl -sf "http://127.0.0.1:$((base + 30))/v1/services"
    mkdir -p "$dir/node1"
    cp -r "$dir/node0/." "$dir/node1/"
    start_bg node1 "$0" _node "$dir" 1
    wait_for "the second govern node" 60 curl -sf "http://127.0.0.1:$((base + 31))/healthz"
    echo "nodes: http://127.0.0.1:$((base + 30)) (sequencing) and http://127.0.0.1:$((base + 31)) (standby)"
  fi
  ;;
down)
  rm -f "$dir/running"
  for f in "$dir"/node*.pid "$dir"/patroni*.pid "$dir"/etcd.pid; do
    [ -f "$f" ] || continue
    kill -TERM "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  pkill -TERM -f -- "--data-dir $dir/node" 2>/dev/null || true
  # Patroni stops its PostgreSQL on TERM; what is left after ten seconds is killed.
  for _ in $(seq 1 50); do
    pgrep -f "patroni $dir/pg|$dir/pg[0-9]/data" >/dev/null || break
    sleep 0.2
  done
  pkill -KILL -f "patroni $dir/pg|$dir/pg[0-9]/data|--data-dir $dir/node" 2>/dev/null || true
  pkill -TERM -f "etcd --name e0 --data-dir $dir/etcd" 2>/dev/null || true
  ;;
status)
  curl -s "http://127.0.0.1:$((base + 20))/cluster" || true
  echo
  for i in 0 1; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((base + 30 + i))/v1/services" || true)
    case "$code" in
      200) echo "node$i: sequencing" ;;
      503) echo "node$i: standby" ;;
      *) echo "node$i: not answering ($code)" ;;
    esac
  done
  ;;
*)
  sed -n '2,15p' "$0"; exit 2 ;;
esac
