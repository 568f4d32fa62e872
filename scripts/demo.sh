#!/bin/bash
# tenantflow demo (`make demo`): OVS + `tenantflow serve` (embedded SQLite store), this host's
# br-int joined with `tenantflow node init`, two tenants with the same subnet 10.0.0.0/24 and two
# VMs each (network namespaces), then: which pings pass, which are blocked, the flows with their
# owners, and what to try next. The controller keeps running; `make demo-stop` removes it all.
#
# Only loopback and the namespaces/veths this script creates carry traffic.
# Env (for running beside other instances): TF_DEMO_API_PORT (9696), TF_DEMO_OFP_PORT (6653),
# TF_DEMO_DIR (./run/demo), TF_DEMO_NS (tfdemo: namespace prefix), OVS_RUNDIR etc. (which OVS),
# TF_BIN (the tenantflow executable).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TF=${TF_BIN:-$ROOT/.venv/bin/tenantflow}
API_PORT=${TF_DEMO_API_PORT:-9696}
OFP_PORT=${TF_DEMO_OFP_PORT:-6653}
DIR=${TF_DEMO_DIR:-$ROOT/run/demo}
NSP=${TF_DEMO_NS:-tfdemo}
API=http://127.0.0.1:$API_PORT
BR=br-int
CHASSIS=$(hostname)

say()  { printf '\n\033[1m%s\033[0m\n' "$*"; }
info() { printf '  %s\n' "$*"; }
die()  { printf '\ndemo: %s\n' "$*" >&2; [ -f "$DIR/tenantflow.log" ] && tail -n 30 "$DIR/tenantflow.log" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (namespaces, Open vSwitch)"
[ -x "$TF" ] || die "$TF missing: run make setup"

# A previous demo is replaced, not stacked.
if [ -f "$DIR/state" ]; then
    say "Stopping the previous demo"
    "$ROOT/scripts/demo-stop.sh" >/dev/null 2>&1 || true
fi
mkdir -p "$DIR"
: > "$DIR/state"
state() { echo "$1=$2" >> "$DIR/state"; }

say "1. Open vSwitch (userspace datapath, no kernel module)"
if /usr/share/openvswitch/scripts/ovs-ctl status >/dev/null 2>&1; then
    info "already running"
else
    "$ROOT/scripts/ovs-start" | sed 's/^/  /'
    state ovs_started 1
fi
if ovs-vsctl --timeout=5 br-exists "$BR"; then state bridge_existed 1; fi

say "2. tenantflow serve (API $API, OpenFlow 127.0.0.1:$OFP_PORT, store $DIR/tf.db)"
rm -f "$DIR"/tf.db*
nohup "$TF" serve --store "sqlite:///$DIR/tf.db" --api-listen "127.0.0.1:$API_PORT" \
    --ofp-listen "127.0.0.1:$OFP_PORT" > "$DIR/tenantflow.log" 2>&1 < /dev/null &
echo $! > "$DIR/tenantflow.pid"
state pid "$(cat "$DIR/tenantflow.pid")"
for _ in $(seq 1 150); do
    curl -fsS "$API/" >/dev/null 2>&1 && break
    kill -0 "$(cat "$DIR/tenantflow.pid")" 2>/dev/null || die "tenantflow serve exited (log: $DIR/tenantflow.log)"
    sleep 0.2
done
curl -fsS "$API/" >/dev/null 2>&1 || die "API did not answer on $API within 30 s"
info "running, pid $(cat "$DIR/tenantflow.pid"), log $DIR/tenantflow.log"

say "3. Join this host's bridge: tenantflow node init --name $CHASSIS"
# Registered first, pointed at the controller second: a bridge that connects before its chassis
# record exists would be registered under its datapath id instead.
out=$("$TF" node init --name "$CHASSIS" --bridge "$BR" --url "$API" 2>&1) \
    || die "node init failed: $out"
echo "$out" | sed 's/^/  /'
out=$("$TF" node init --name "$CHASSIS" --bridge "$BR" --controller "tcp:127.0.0.1:$OFP_PORT" \
    --url "$API" 2>&1) || die "node init failed: $out"
echo "$out" | sed 's/^/  /'
connected() {
    local c
    for c in $(ovs-vsctl --timeout=5 get bridge "$BR" controller 2>/dev/null | tr -d '[],'); do
        [ "$(ovs-vsctl --timeout=5 get controller "$c" is_connected)" = true ] && return 0
    done
    return 1
}
for _ in $(seq 1 100); do connected && break; sleep 0.2; done
connected || die "$BR did not connect to the controller"
info "$BR connected to the controller"

# api METHOD PATH PROJECT [JSON] -> response body; fails loudly with Neutron's error.
api() {
    local out code
    out=$(curl -sS -X "$1" -H "X-Project-Id: $3" -H 'Content-Type: application/json' \
          ${4:+--data "$4"} -w '\n%{http_code}' "$API/v2.0/$2") || die "curl $1 $2 failed"
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    [ "${code:0:1}" = 2 ] || die "$1 $2 as $3 -> HTTP $code: $out"
    printf '%s' "$out"
}

# vm TENANT NAME NET_ID SUBNET_ID IP MTU : port through the API, namespace with a veth into br-int.
vm() {
    local tenant=$1 name=$2 net=$3 sub=$4 ip=$5 mtu=$6 port id mac tap ns
    port=$(api POST ports "$tenant" "{\"port\": {\"name\": \"$name\", \"network_id\": \"$net\",
        \"fixed_ips\": [{\"subnet_id\": \"$sub\", \"ip_address\": \"$ip\"}]}}")
    id=$(jq -r .port.id <<<"$port"); mac=$(jq -r .port.mac_address <<<"$port")
    tap=tap${id:0:11}; ns=$NSP-$name
    ip netns add "$ns"; state ns "$ns"
    mkdir -p "/etc/netns/$ns"; touch "/etc/netns/$ns/resolv.conf"
    ip link add "$tap" type veth peer name eth0 netns "$ns"; state tap "$tap"
    ethtool -K "$tap" tx off >/dev/null
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip link set eth0 address "$mac" mtu "$mtu" up
    ip netns exec "$ns" ip addr add "$ip/24" dev eth0
    ip link set "$tap" up
    ovs-vsctl --timeout=5 --may-exist add-port "$BR" "$tap" -- set Interface "$tap" \
        "external_ids:iface-id=$id" "external_ids:attached-mac=$mac"
    eval "PORT_${name//-/_}=$id"
    printf '  %-9s %-7s %-10s mac %s  port %s  (namespace %s)\n' "$name" "$tenant" "$ip" "$mac" "$id" "$ns"
}

say "4. Two tenants, the same subnet 10.0.0.0/24 each, two VMs each"
for t in alice bob; do
    net=$(api POST networks "$t" "{\"network\": {\"name\": \"$t-net\"}}" | jq -r .network.id)
    sub=$(api POST subnets "$t" "{\"subnet\": {\"name\": \"$t-subnet\", \"network_id\": \"$net\",
        \"cidr\": \"10.0.0.0/24\", \"ip_version\": 4}}" | jq -r .subnet.id)
    mtu=$(api GET "networks/$net" "$t" | jq -r '.network.mtu // 1500')
    info "tenant $t: network $net (MTU $mtu), subnet 10.0.0.0/24"
    eval "NET_$t=$net SUB_$t=$sub MTU_$t=$mtu"
done
# bob-vm1 deliberately has the same IP as alice-vm2: overlapping addresses stay apart.
vm alice alice-vm1 "$NET_alice" "$SUB_alice" 10.0.0.11 "$MTU_alice"
vm alice alice-vm2 "$NET_alice" "$SUB_alice" 10.0.0.12 "$MTU_alice"
vm bob   bob-vm1   "$NET_bob"   "$SUB_bob"   10.0.0.12 "$MTU_bob"
vm bob   bob-vm2   "$NET_bob"   "$SUB_bob"   10.0.0.21 "$MTU_bob"

# Wait until the controller bound all four ports (status ACTIVE) so the flows are there.
for _ in $(seq 1 100); do
    n=$(curl -fsS "$API/v2.0/ports" | jq '[.ports[] | select((.name | test("-vm[12]$")) and .status == "ACTIVE")] | length')
    [ "$n" = 4 ] && break
    sleep 0.2
done
info "ports ACTIVE: ${n:-0}/4"

say "5. Who can reach whom"
FAILED=0
# check FROM TARGET_IP EXPECT(pass|blocked) WHAT
check() {
    local from=$1 ip=$2 expect=$3 what=$4 got
    got=blocked
    for _ in 1 2 3; do
        if ip netns exec "$NSP-$from" ping -n -c 1 -W 1 "$ip" >/dev/null 2>&1; then got=pass; break; fi
    done
    if [ "$got" = "$expect" ]; then mark=ok; else mark="UNEXPECTED"; FAILED=1; fi
    if [ "$got" = pass ]; then verb="PASSES "; else verb="BLOCKED"; fi
    printf '  %-7s %-9s -> %-10s %-48s [%s]\n' "$verb" "$from" "$ip" "($what)" "$mark"
}
check alice-vm1 10.0.0.12 pass    "alice -> alice-vm2, same tenant"
check bob-vm1   10.0.0.21 pass    "bob -> bob-vm2, same tenant"
check alice-vm1 10.0.0.21 blocked "alice -> bob-vm2, other tenant"
check bob-vm2   10.0.0.11 blocked "bob -> alice-vm1, other tenant"
mac_seen=$(ip netns exec "$NSP-alice-vm1" ip neigh show 10.0.0.12 | awk '{print $5}')
mac_a2=$(ip netns exec "$NSP-alice-vm2" cat /sys/class/net/eth0/address)
if [ -n "$mac_seen" ] && [ "$mac_seen" = "$mac_a2" ]; then
    info "10.0.0.12 exists in both tenants; alice-vm1 reached alice-vm2 ($mac_a2), never bob-vm1."
fi

say "6. The flows on $BR, and who owns them"
ovs-ofctl -O OpenFlow13 --no-stats dump-flows "$BR" | sed -n '2,16p' | cut -c1-150 | sed 's/^/  /'
info "... $(ovs-ofctl -O OpenFlow13 dump-flows "$BR" | tail -n +2 | wc -l) flows in total"
echo
info "tenantflow flows --chassis $CHASSIS --owner port <alice-vm1's port>  (annotated with owners):"
"$TF" flows --url "$API" --chassis "$CHASSIS" --owner port "$PORT_alice_vm1" 2>&1 | head -n 12 \
    | sed "s/^/    /" || true

say "7. Explore further"
cat <<EOF
  ip netns exec $NSP-alice-vm1 ping 10.0.0.12           # alice's VMs talk
  ip netns exec $NSP-alice-vm1 ping 10.0.0.21           # bob's VM: blocked
  ip netns list | grep $NSP                             # the four VMs
  ovs-ofctl -O OpenFlow13 dump-flows $BR                # everything on the switch
  $TF flows --url $API --chassis $CHASSIS               # desired flows with owners
  $TF flows --url $API --chassis $CHASSIS --diff        # desired vs installed
  curl -s -H 'X-Project-Id: alice' $API/v2.0/ports | jq '.ports[] | {name, status, fixed_ips}'
  tail -f $DIR/tenantflow.log                           # controller log
  make demo-stop                                        # remove everything
EOF
if [ "$FAILED" != 0 ]; then
    die "some results were not as expected (see above)"
fi
say "Demo ready: the controller keeps running (pid $(cat "$DIR/tenantflow.pid"))."
