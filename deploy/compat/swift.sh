#!/usr/bin/env bash
# A throwaway OpenStack Swift with the S3 API (s3api + tempauth), on loopback only.
#
#   deploy/compat/swift.sh start [DIR]   start it; prints `export AWS_...=...` lines
#   deploy/compat/swift.sh stop DIR      stop everything that `start DIR` started
#
# Everything lives in DIR (a fresh temp dir when none is given): configs, rings,
# the one storage device, logs, pids, and DIR/env with the same export lines.
# Account, container and object servers and the proxy each run as one process
# on a free 127.0.0.1 port. Needs Debian's swift-proxy, swift-account,
# swift-container and swift-object, and a filesystem with user xattrs for DIR.
#
# Swift reads its hash prefix and storage policies from /etc/swift/swift.conf,
# which the Debian package ships; the rings are built here, one replica on one
# device, so that policy 0 stores everything in DIR.
set -euo pipefail

usage() {
  echo "usage: $0 start [DIR] | stop DIR" >&2
  exit 2
}

die() {
  echo "swift.sh: $*" >&2
  exit 1
}

free_ports() {
  # Bind port 0 N times at once so the kernel hands out N distinct free ports.
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

stop() {
  local dir=$1 pid
  [ -f "$dir/pids" ] || return 0
  while read -r pid; do
    [ -n "$pid" ] || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done <"$dir/pids"
  for _ in $(seq 50); do
    local alive=0
    while read -r pid; do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
    done <"$dir/pids"
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  while read -r pid; do
    [ -n "$pid" ] || continue
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done <"$dir/pids"
  rm -f "$dir/pids"
}

check_tools() {
  local tool missing=()
  for tool in swift-ring-builder swift-proxy-server swift-account-server \
    swift-container-server swift-object-server python3 curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ "${#missing[@]}" = 0 ] || die "missing ${missing[*]} (Debian: swift-proxy swift-account swift-container swift-object curl)"
  [ -r /etc/swift/swift.conf ] || die "/etc/swift/swift.conf is missing (it comes with Debian's swift package)"
}

check_xattr() {
  python3 - "$1" <<'EOF' || die "$1 has no user xattr support; Swift's object server needs it"
import os, sys
probe = os.path.join(sys.argv[1], ".xattr-probe")
open(probe, "w").close()
try:
    os.setxattr(probe, "user.swift.probe", b"1")
finally:
    os.unlink(probe)
EOF
}

write_server_conf() {
  # $1 kind (account|container|object), $2 port
  cat >"$dir/etc/$1-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
user = $user
swift_dir = $dir/etc
devices = $dir/srv
mount_check = false
disable_fallocate = true
log_name = $1-server
log_udp_host = 127.0.0.1
log_udp_port = $log_port

[pipeline:main]
pipeline = healthcheck $1-server

[app:$1-server]
use = egg:swift#$1

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
}

write_proxy_conf() {
  cat >"$dir/etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $proxy_port
workers = 0
user = $user
swift_dir = $dir/etc
log_name = proxy-server
log_udp_host = 127.0.0.1
log_udp_port = $log_port

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
# S3 allows 10,000 parts; s3api and SLO default to 1,000.
max_upload_part_num = 10000

[filter:slo]
use = egg:swift#slo
max_manifest_segments = 10000

[filter:tempauth]
use = egg:swift#tempauth
user_gateway_gw = $secret_key .admin

[filter:cache]
use = egg:swift#memcache
# tempauth insists on a memcache client; no memcached runs, so point it at a
# port nothing listens on (it then caches nothing and says so in the log).
memcache_servers = 127.0.0.1:$memcache_port

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:dlo]
use = egg:swift#dlo
EOF
}

build_ring() {
  # $1 ring name, $2 port. One replica, one device, 2^6 partitions.
  local builder="$dir/etc/$1.builder" rc
  swift-ring-builder "$builder" create 6 1 1 >/dev/null
  swift-ring-builder "$builder" add "r1z1-127.0.0.1:$2/d1" 100 >/dev/null
  set +e
  swift-ring-builder "$builder" rebalance >"$dir/log/ring-$1.log" 2>&1
  rc=$?
  set -e
  # 1 means "rebalanced with warnings"; 2 is an error.
  [ "$rc" -le 1 ] || die "swift-ring-builder $1 rebalance failed: $(cat "$dir/log/ring-$1.log")"
}

launch() {
  # $1 server binary, $2 config, $3 log name. setsid: one process group each.
  setsid "$1" "$2" --verbose </dev/null >"$dir/log/$3.log" 2>&1 &
  echo $! >>"$dir/pids"
}

wait_healthy() {
  # $1 name, $2 port
  local deadline=$((SECONDS + ${SWIFT_START_TIMEOUT:-60}))
  until curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$2/healthcheck"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$1 on port $2 not healthy; log tail: $(tail -n 30 "$dir/log/$1.log" 2>/dev/null)"
    fi
    sleep 0.1
  done
}

start() {
  dir=${1:-$(mktemp -d "${TMPDIR:-/tmp}/swift-compat.XXXXXX")}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  check_tools
  [ ! -s "$dir/pids" ] || die "$dir already has running servers; stop them first"
  mkdir -p "$dir/etc" "$dir/srv/d1" "$dir/log"
  check_xattr "$dir/srv/d1"
  user=$(id -un)
  read -r proxy_port account_port container_port object_port memcache_port log_port <<<"$(free_ports 6)"
  secret_key=$(python3 -c 'import secrets; print(secrets.token_hex(20))')

  for kind in account container object; do
    port_var="${kind}_port"
    write_server_conf "$kind" "${!port_var}"
    build_ring "$kind" "${!port_var}"
  done
  write_proxy_conf

  trap 'stop "$dir"' ERR
  launch swift-account-server "$dir/etc/account-server.conf" account-server
  launch swift-container-server "$dir/etc/container-server.conf" container-server
  launch swift-object-server "$dir/etc/object-server.conf" object-server
  launch swift-proxy-server "$dir/etc/proxy-server.conf" proxy-server
  wait_healthy account-server "$account_port"
  wait_healthy container-server "$container_port"
  wait_healthy object-server "$object_port"
  wait_healthy proxy-server "$proxy_port"
  trap - ERR

  cat >"$dir/env" <<EOF
export COMPAT_DIR=$dir
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$proxy_port
export AWS_ACCESS_KEY_ID=gateway:gw
export AWS_SECRET_ACCESS_KEY=$secret_key
export AWS_REGION=us-east-1
EOF
  chmod 600 "$dir/env"
  cat "$dir/env"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop)
    [ -n "${2:-}" ] || usage
    stop "$2"
    ;;
  *) usage ;;
esac
