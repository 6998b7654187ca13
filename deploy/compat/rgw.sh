#!/usr/bin/env bash
# A throwaway one-node Ceph with the RADOS Gateway (S3), on loopback only.
#
#   deploy/compat/rgw.sh start [DIR]   start it; prints `export AWS_...=...` lines
#   deploy/compat/rgw.sh stop DIR      stop everything that `start DIR` started
#
# One monitor, one OSD (BlueStore on a sparse file in DIR), no manager, cephx
# off, every pool one replica, and radosgw with the beast frontend on a free
# 127.0.0.1 port. An S3 user with fresh keys is made with radosgw-admin.
# Everything (ceph.conf, mon and OSD data, sockets, logs, pids, DIR/env)
# lives in DIR, a fresh temp dir when none is given. Needs Debian's ceph-mon,
# ceph-osd and radosgw.
set -euo pipefail

usage() {
  echo "usage: $0 start [DIR] | stop DIR" >&2
  exit 2
}

die() {
  echo "rgw.sh: $*" >&2
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
  # Gateway first, monitor last, so nothing waits on a monitor that is gone.
  for pid in $(tac "$dir/pids"); do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 30); do  # a test cluster need not shut down cleanly
    local alive=0
    for pid in $(cat "$dir/pids"); do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in $(cat "$dir/pids"); do
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$dir/pids"
}

check_tools() {
  local tool missing=()
  for tool in ceph ceph-mon ceph-osd ceph-authtool monmaptool radosgw radosgw-admin python3 curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ "${#missing[@]}" = 0 ] || die "missing ${missing[*]} (Debian: ceph-mon ceph-osd radosgw curl)"
}

write_conf() {
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port,v1:127.0.0.1:$mon_v1_port]
public addr = 127.0.0.1
public network = 127.0.0.1/32
ms bind ipv6 = false
# No cephx: a throwaway cluster on loopback. msgr2 then has to use crc mode.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
log to stderr = false
err to stderr = true
# One OSD holds every replica there is.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail warn = 2
mon data avail crit = 1

[mon]
mon data = $dir/mon/\$cluster-\$id
mon initial members = a

[osd]
osd data = $dir/osd/\$cluster-\$id
osd objectstore = bluestore
bluestore block path = $dir/osd/\$cluster-\$id/block.file
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
osd memory target = 939524096
osd max object name len = 460
osd max object namespace len = 64
osd class dir = $class_dir

[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw dns name = 127.0.0.1
rgw enable usage log = false
rgw zonegroup root pool = .rgw.root
EOF
}

launch() {
  # $1 log name, then the command. setsid: one process group each.
  local name=$1
  shift
  setsid "$@" </dev/null >"$dir/log/$name.out" 2>&1 &
  echo $! >>"$dir/pids"
}

wait_for() {
  # $1 what, $2 seconds, then a command that succeeds when ready.
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what not ready after ${SECONDS}s; see $dir/log"
    sleep 0.2
  done
}

osd_up() {
  ceph -c "$conf" osd dump 2>/dev/null | grep -q '^osd.0 up'
}

start() {
  dir=${1:-$(mktemp -d "${TMPDIR:-/tmp}/rgw-compat.XXXXXX")}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  check_tools
  [ ! -s "$dir/pids" ] || die "$dir already has running daemons; stop them first"
  conf=$dir/ceph.conf
  mkdir -p "$dir/run" "$dir/log" "$dir/mon" "$dir/osd/ceph-0" "$dir/rgw"
  # The OSD needs its class plugins (cls_rgw and friends); Debian keeps them under the multiarch libdir.
  class_dir=$(dirname "$(find /usr/lib -maxdepth 3 -name 'libcls_rgw.so' -print -quit 2>/dev/null || true)")
  [ -d "$class_dir" ] && [ "$class_dir" != "." ] || die "RADOS class plugins (libcls_rgw.so) not found under /usr/lib"
  read -r mon_port mon_v1_port rgw_port <<<"$(free_ports 3)"
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  access_key=$(python3 -c 'import secrets; print("RGW" + secrets.token_hex(8).upper())')
  secret_key=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
  write_conf

  trap 'stop "$dir"' ERR
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port,v1:127.0.0.1:$mon_v1_port]" \
    "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" \
    >"$dir/log/mkfs-mon.out" 2>&1 || die "ceph-mon --mkfs failed: $(cat "$dir/log/mkfs-mon.out")"
  launch mon.a ceph-mon -c "$conf" -f -i a
  wait_for "ceph-mon" 60 ceph -c "$conf" --connect-timeout 5 mon stat

  ceph -c "$conf" osd new "$osd_uuid" 0 >/dev/null
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/mkfs-osd.out" 2>&1 ||
    die "ceph-osd --mkfs failed: $(tail -n 20 "$dir/log/mkfs-osd.out")"
  launch osd.0 ceph-osd -c "$conf" -f -i 0
  wait_for "ceph-osd" 90 osd_up

  radosgw-admin -c "$conf" user create --uid=gateway --display-name=gateway \
    --access-key="$access_key" --secret="$secret_key" >"$dir/log/user-create.out" 2>&1 ||
    die "radosgw-admin user create failed: $(tail -n 20 "$dir/log/user-create.out")"
  launch rgw radosgw -c "$conf" -f -n client.rgw.gw
  wait_for "radosgw" 90 curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$rgw_port/"
  trap - ERR

  cat >"$dir/env" <<EOF
export COMPAT_DIR=$dir
export CEPH_CONF=$conf
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$rgw_port
export AWS_ACCESS_KEY_ID=$access_key
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
