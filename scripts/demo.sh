#!/bin/bash
# tenantflow demo (`make demo`): OVS + `tenantflow serve` (embedded SQLite store), this host's
# br-int joined with `tenantflow node init`, then, in plain words, with a check per result:
#   - two tenants with the same subnet 10.0.0.0/24 (VXLAN networks), VMs (network namespaces)
#     that get their addresses, gateway and MTU by DHCP from the controller;
#   - tenant isolation: which pings pass and which are blocked;
#   - security groups: the default group, a "web" group opened for tcp/8080 while you watch;
#   - distributed routing: a second network and a router; a VM pings across it;
#   - floating IP and SNAT: an "outside" host on a flat external network reaches a VM's
#     floating IP, and sees the router's address when a VM without one connects out;
#   - the flows on the switch with their owners, and commands to explore further.
# The controller keeps running; `make demo-stop` removes it all. Exit status 1 if any result is
# not the expected one.
#
# Only loopback and the namespaces/veths this script creates carry traffic; every wait and
# retry is bounded. DHCP clients run with a private config, lease file, pid file and a minimal
# script that only sets address, route and MTU inside the VM (never the host's resolv.conf).
# Env (for running beside other instances): TF_DEMO_API_PORT (9696), TF_DEMO_OFP_PORT (6653),
# TF_DEMO_DIR (./run/demo), TF_DEMO_NS (tfdemo: namespace/interface prefix, at most 7 chars),
# OVS_RUNDIR etc. (which OVS), TF_BIN (the tenantflow executable).
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
UPLINK=$NSP-up                 # veth on br-int towards the outside host (flat network physnet1)
OUTSIDE_IP=172.24.4.1          # the outside host ("the internet") on the external network
T0=$SECONDS

say()  { printf '\n\033[1m%s\033[0m\n' "$*"; }
info() { printf '  %s\n' "$*"; }
die()  { printf '\ndemo: %s\n' "$*" >&2; [ -f "$DIR/tenantflow.log" ] && tail -n 30 "$DIR/tenantflow.log" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (namespaces, Open vSwitch)"
[ -x "$TF" ] || die "$TF missing: run make setup"
for tool in jq dhclient nc ethtool curl; do
    command -v "$tool" >/dev/null || die "$tool missing: run make setup"
done
[ ${#NSP} -le 7 ] || die "TF_DEMO_NS must be at most 7 characters (interface names)"

# A previous demo is replaced, not stacked.
if [ -f "$DIR/state" ]; then
    say "Stopping the previous demo"
    "$ROOT/scripts/demo-stop.sh" >/dev/null 2>&1 || true
fi
mkdir -p "$DIR"
: > "$DIR/state"
state() { echo "$1=$2" >> "$DIR/state"; }

# ---- helpers ------------------------------------------------------------------------------
# tfc PROJECT ARGS... : a tenantflow CLI command, shown as you would type it (PROJECT "" = admin).
# Its output is left in $OUT; a failure stops the demo with the API's error.
OUT=
tfc() {
    local project=$1; shift
    local shown="tenantflow${project:+ --project $project} $*"
    printf '  \033[2m$ %s\033[0m\n' "${shown% -f json}"
    OUT=$("$TF" --url "$API" ${project:+--project "$project"} "$@" 2>&1) || die "failed: $shown: $OUT"
}

FAILED=0
# unexpected : count it and keep the switch's flows for a post-mortem.
unexpected() {
    FAILED=$((FAILED + 1))
    ovs-ofctl -O OpenFlow13 dump-flows "$BR" > "$DIR/unexpected-$FAILED.flows" 2>&1 || true
}
# verdict GOT EXPECT TEXT : one result line, PASS/BLOCKED and [ok]/[UNEXPECTED].
verdict() {
    local got=$1 expect=$2 text=$3 mark=ok word=BLOCKED
    [ "$got" = pass ] && word=PASS
    if [ "$got" != "$expect" ]; then mark=UNEXPECTED; unexpected; fi
    printf '  %-7s %-6s %s\n' "$word" "[$mark]" "$text"
}
# expect_eq GOT WANTED TEXT : a value check line.
expect_eq() {
    local mark=ok
    if [ "$1" != "$2" ]; then mark=UNEXPECTED; unexpected; fi
    printf '  %-7s %-6s %s\n' "" "[$mark]" "$3"
    [ "$mark" = ok ] || printf '  %-7s %-6s %s\n' "" "" "(got '$1', wanted '$2')"
}

# ping_check FROM_VM IP EXPECT(pass|blocked) WHAT ; the reply's TTL is left in $TTL.
TTL=
ping_check() {
    local from=$1 ip=$2 expect=$3 what=$4 got=blocked out tries=3
    [ "$expect" = blocked ] && tries=2
    TTL=
    for _ in $(seq 1 "$tries"); do
        if out=$(ip netns exec "$NSP-$from" ping -n -c 1 -W 1 "$ip" 2>&1); then
            got=pass; TTL=$(grep -o 'ttl=[0-9]*' <<<"$out" | head -n1 | cut -d= -f2); break
        fi
    done
    verdict "$got" "$expect" "ping $from -> $ip  ($what)"
}

# tcp_try NS IP PORT TRIES : a TCP connection (nc, 1 s timeout per attempt) succeeds?
tcp_try() {
    local i
    for i in $(seq 1 "$4"); do
        ip netns exec "$1" nc -z -n -w 1 "$2" "$3" >/dev/null 2>&1 && return 0
    done
    return 1
}
# tcp_check FROM_NS_SUFFIX IP PORT EXPECT WHAT
tcp_check() {
    local from=$1 ip=$2 port=$3 expect=$4 what=$5 got=blocked tries=5
    [ "$expect" = blocked ] && tries=2
    tcp_try "$NSP-$from" "$ip" "$port" "$tries" && got=pass
    verdict "$got" "$expect" "tcp $from -> $ip:$port  ($what)"
}

# listen VM PORT : a TCP listener in the VM (nc; it stops by itself after 15 minutes).
listen() {
    ip netns exec "$NSP-$1" timeout 900 nc -lkn -d "$2" </dev/null >/dev/null 2>&1 &
    state proc $!
    for _ in $(seq 1 50); do
        ip netns exec "$NSP-$1" ss -Hltn "sport = :$2" | grep -q . && return 0
        sleep 0.1
    done
    die "nc did not listen on $1:$2"
}

# seen_from VM PORT : connect from VM to the outside host's PORT; prints the source address the
# outside host saw (empty if no connection).
seen_from() {
    local vm=$1 port=$2 log=$DIR/outside-$2.log lp
    ip netns exec "$NSP-outside" timeout 15 nc -lvn -d "$port" </dev/null >"$log" 2>&1 &
    lp=$!
    for _ in $(seq 1 50); do
        ip netns exec "$NSP-outside" ss -Hltn "sport = :$port" | grep -q . && break
        sleep 0.1
    done
    if tcp_try "$NSP-$vm" "$OUTSIDE_IP" "$port" 5; then
        # connected: give the listener a moment to accept and log who it was
        for _ in $(seq 1 30); do grep -q 'Connection received' "$log" && break; sleep 0.1; done
    fi
    kill "$lp" 2>/dev/null || true
    wait "$lp" 2>/dev/null || true
    awk '/Connection received on/ {print $4; exit}' "$log"
}

# wait_active PORT_ID... : until the controller has bound these ports (status ACTIVE).
wait_active() {
    local ids n want=$#
    ids=$(printf '"%s",' "$@"); ids="[${ids%,}]"
    for _ in $(seq 1 100); do
        n=$(curl -fsS "$API/v2.0/ports" | jq --argjson ids "$ids" \
            '[.ports[] | select(.status == "ACTIVE" and (.id | IN($ids[])))] | length')
        [ "$n" = "$want" ] && return 0
        sleep 0.2
    done
    die "only $n of $want ports became ACTIVE within 20 s"
}

# vm TENANT NAME NETWORK SUBNET IP [SECURITY_GROUP...] : a port through the CLI (its fixed IP is
# the address DHCP will hand out), a namespace with a veth `tap<port id[:11]>` into br-int.
# No address is configured here: the VM asks the controller by DHCP (dhcp_vms).
vm() {
    local tenant=$1 name=$2 net=$3 sub=$4 ip=$5 g id mac tap ns
    shift 5
    local sg=()
    for g in "$@"; do sg+=(--security-group "$g"); done
    tfc "$tenant" port create --network "$net" --fixed-ip "subnet=$sub,ip-address=$ip" \
        --device "$name" ${sg[@]+"${sg[@]}"} "$name" -f json
    id=$(jq -r .id <<<"$OUT"); mac=$(jq -r .mac_address <<<"$OUT")
    tap=tap${id:0:11}; ns=$NSP-$name
    ip netns add "$ns"; state ns "$ns"
    mkdir -p "/etc/netns/$ns"; touch "/etc/netns/$ns/resolv.conf"
    ip link add "$tap" type veth peer name eth0 netns "$ns"; state tap "$tap"
    ethtool -K "$tap" tx off >/dev/null          # TCP on the userspace datapath needs it
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip link set eth0 address "$mac" up
    ip link set "$tap" up
    ovs-vsctl --timeout=5 --may-exist add-port "$BR" "$tap" -- set Interface "$tap" \
        "external_ids:iface-id=$id" "external_ids:attached-mac=$mac"
    eval "PORT_${name//-/_}=$id IP_${name//-/_}=$ip"
}

# dhcp_vms NAME=GATEWAY... : each named VM runs ISC dhclient (in parallel, in the foreground of a
# background job, 15 s at most), then one line per VM with what it got: address, default
# gateway, MTU, DHCP server. The clients are stopped once bound (the lease lasts a day).
dhcp_vms() {
    local spec name gw addr got_gw mtu server d=$DIR/dhcp all
    local -a names=() pids=()
    for spec in "$@"; do
        name=${spec%%=*}; names+=("$name")
        ip netns exec "$NSP-$name" timeout 15 dhclient -d -1 -v -cf "$d/dhclient.conf" \
            -lf "$d/$name.leases" -pf "$d/$name.pid" -sf "$ROOT/scripts/vm-dhclient-script" eth0 \
            >"$d/$name.log" 2>&1 </dev/null &
        pids+=($!)
    done
    for _ in $(seq 1 150); do
        all=1
        for name in "${names[@]}"; do
            ip netns exec "$NSP-$name" ip -4 -o addr show dev eth0 | grep -q inet || { all=0; break; }
        done
        [ "$all" = 1 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for spec in "$@"; do
        name=${spec%%=*}; gw=${spec#*=}
        addr=$(ip netns exec "$NSP-$name" ip -4 -o addr show dev eth0 | awk '{print $4; exit}')
        got_gw=$(ip netns exec "$NSP-$name" ip -4 route show default | awk '{print $3; exit}')
        mtu=$(ip netns exec "$NSP-$name" cat /sys/class/net/eth0/mtu)
        server=$(grep -o 'DHCPACK of [0-9.]* from [0-9.]*' "$d/$name.log" | awk '{print $5; exit}')
        expect_eq "$addr $got_gw $mtu" "$(eval echo "\$IP_${name//-/_}")/24 $gw $NET_MTU" \
            "$(printf '%-10s got %-14s gateway %-9s MTU %-5s from DHCP server %s' \
               "$name" "${addr:-nothing}" "${got_gw:--}" "$mtu" "${server:--}")"
    done
}

# ---- 1-3: switch, controller, node ----------------------------------------------------------
say "1. Open vSwitch (userspace datapath, no kernel module)"
if /usr/share/openvswitch/scripts/ovs-ctl status >/dev/null 2>&1; then
    info "already running"
else
    "$ROOT/scripts/ovs-start" | sed 's/^/  /'
    state ovs_started 1
fi
if ovs-vsctl --timeout=5 br-exists "$BR"; then state bridge_existed 1; fi

say "2. tenantflow serve (API $API, OpenFlow 127.0.0.1:$OFP_PORT, store $DIR/tf.db)"
rm -f "$DIR"/tf.db* "$DIR"/outside-*.log "$DIR"/unexpected-*.flows
rm -rf "$DIR/dhcp"
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

# The outside host: a namespace on the far end of the uplink veth (flat network physnet1).
ip netns add "$NSP-outside"; state ns "$NSP-outside"
ip link add "$UPLINK" type veth peer name eth0 netns "$NSP-outside"; state tap "$UPLINK"
ethtool -K "$UPLINK" tx off >/dev/null
ip netns exec "$NSP-outside" ethtool -K eth0 tx off >/dev/null
ip netns exec "$NSP-outside" ip link set lo up
ip netns exec "$NSP-outside" ip link set eth0 up
ip netns exec "$NSP-outside" ip addr add "$OUTSIDE_IP/24" dev eth0
ip link set "$UPLINK" up

say "3. Join this host's bridge: tenantflow node init --name $CHASSIS"
# Registered first, pointed at the controller second: a bridge that connects before its chassis
# record exists would be registered under its datapath id instead.
# (An "OVS reports: []" warning is an empty error list, i.e. no error: not shown.)
out=$("$TF" node init --name "$CHASSIS" --bridge "$BR" --bridge-mapping "physnet1:$UPLINK" \
      --url "$API" 2>&1) || die "node init failed: $out"
grep -v 'OVS reports: \[\] ' <<<"$out" | sed 's/^/  /'
out=$("$TF" node init --name "$CHASSIS" --bridge "$BR" --bridge-mapping "physnet1:$UPLINK" \
      --controller "tcp:127.0.0.1:$OFP_PORT" --url "$API" 2>&1) || die "node init failed: $out"
grep -v 'OVS reports: \[\] ' <<<"$out" | sed 's/^/  /'
connected() {
    local c
    for c in $(ovs-vsctl --timeout=5 get bridge "$BR" controller 2>/dev/null | tr -d '[],'); do
        [ "$(ovs-vsctl --timeout=5 get controller "$c" is_connected)" = true ] && return 0
    done
    return 1
}
for _ in $(seq 1 100); do connected && break; sleep 0.2; done
connected || die "$BR did not connect to the controller"
info "$BR connected to the controller; uplink $UPLINK carries the flat network physnet1"
# The chassis' metadata agent: namespace $NSP-meta + port tap-meta on $BR, 169.254.169.254:80.
state ns "$NSP-meta"
nohup "$TF" node metadata-agent --name "$CHASSIS" --bridge "$BR" --url "$API" --namespace "$NSP-meta" \
    > "$DIR/metadata-agent.log" 2>&1 < /dev/null &
state metapid $!
for _ in $(seq 1 100); do grep -q 'metadata-agent ready' "$DIR/metadata-agent.log" && break; sleep 0.1; done
grep -q 'metadata-agent ready' "$DIR/metadata-agent.log" || die "metadata agent did not start ($DIR/metadata-agent.log)"
info "tenantflow node metadata-agent --name $CHASSIS: running (log $DIR/metadata-agent.log)"

# ---- 4-5: tenants, VMs, DHCP ----------------------------------------------------------------
say "4. Two tenants, the same subnet 10.0.0.0/24 each"
for t in alice bob; do
    tfc "$t" network create "$t-net" -f json
    vni=$(jq -r '."provider:segmentation_id"' <<<"$OUT"); NET_MTU=$(jq -r .mtu <<<"$OUT")
    net_id=$(jq -r .id <<<"$OUT")
    tfc "$t" subnet create --network "$t-net" --subnet-range 10.0.0.0/24 "$t-subnet" -f json
    dhcp_ip=$(curl -fsS -H "X-Project-Id: $t" \
        "$API/v2.0/ports?network_id=$net_id&device_owner=network:dhcp" | jq -r '.ports[0].fixed_ips[0].ip_address')
    info "-> $t-net: a VXLAN overlay network (VNI $vni, MTU $NET_MTU); subnet with DHCP on,"
    info "   gateway $(jq -r .gateway_ip <<<"$OUT"), DHCP port $dhcp_ip (answered by the controller itself)"
done
info "(one chassis here: VMs on other chassis would be reached through a VXLAN tunnel, VNI per network)"

say "5. VMs: ports through the API, addresses by DHCP from the controller"
mkdir -p "$DIR/dhcp"
cat > "$DIR/dhcp/dhclient.conf" <<'EOF'
timeout 10;
retry 1;
request subnet-mask, broadcast-address, routers, interface-mtu, domain-name,
        domain-name-servers, host-name, dhcp-lease-time;
EOF
# bob-vm1 deliberately has the same IP as alice-vm2: overlapping addresses stay apart.
vm alice alice-vm1 alice-net alice-subnet 10.0.0.11
vm alice alice-vm2 alice-net alice-subnet 10.0.0.12
vm bob   bob-vm1   bob-net   bob-subnet   10.0.0.12
vm bob   bob-vm2   bob-net   bob-subnet   10.0.0.21
wait_active "$PORT_alice_vm1" "$PORT_alice_vm2" "$PORT_bob_vm1" "$PORT_bob_vm2"
info "4 ports ACTIVE (bound to their taps); each VM runs: dhclient -1 eth0 (private files)"
dhcp_vms alice-vm1=10.0.0.1 alice-vm2=10.0.0.1 bob-vm1=10.0.0.1 bob-vm2=10.0.0.1

# ---- 6: isolation -------------------------------------------------------------------------
say "6. Tenant isolation: who can reach whom"
ping_check alice-vm1 10.0.0.12 pass    "alice -> alice-vm2, same tenant"
ping_check bob-vm1   10.0.0.21 pass    "bob -> bob-vm2, same tenant"
ping_check alice-vm1 10.0.0.21 blocked "alice -> bob-vm2, other tenant"
ping_check bob-vm2   10.0.0.11 blocked "bob -> alice-vm1, other tenant"
mac_seen=$(ip netns exec "$NSP-alice-vm1" ip neigh show 10.0.0.12 | awk '{print $5}')
mac_a2=$(ip netns exec "$NSP-alice-vm2" cat /sys/class/net/eth0/address)
expect_eq "$mac_seen" "$mac_a2" "10.0.0.12 is in both tenants: alice-vm1 reached alice-vm2 ($mac_a2)"

# ---- 7: security groups -------------------------------------------------------------------
say "7. Security groups (stateful, conntrack in OVS)"
info "Every port starts in its tenant's 'default' group: all egress, ingress only from members."
tfc alice security-group create web -f json
info "-> group 'web': no ingress rule yet. A new VM alice-web (10.0.0.13) is only in 'web':"
vm alice alice-web alice-net alice-subnet 10.0.0.13 web
wait_active "$PORT_alice_web"
dhcp_vms alice-web=10.0.0.1
listen alice-vm2 8080
listen alice-web 8080
info "nc listens on tcp/8080 in alice-vm2 and alice-web"
tcp_check  alice-vm1 10.0.0.12 8080 pass    "both in 'default': members reach each other"
tcp_check  alice-vm1 10.0.0.13 8080 blocked "alice-web is in 'web', which has no rule yet"
tfc alice security-group-rule create web --ingress --protocol tcp --dst-port 8080 \
    --remote-ip 0.0.0.0/0 -f json
tcp_check  alice-vm1 10.0.0.13 8080 pass    "the new rule opens tcp/8080 from anywhere"
ping_check alice-vm1 10.0.0.13 blocked      "the rule opens tcp/8080 only, not ping"
tcp_check  bob-vm2   10.0.0.13 8080 blocked "bob's network never reaches alice's"

# ---- 8: routing ---------------------------------------------------------------------------
say "8. Distributed routing: a second network for alice, and a router"
tfc alice network create alice-net2 -f json
tfc alice subnet create --network alice-net2 --subnet-range 10.0.1.0/24 alice-subnet2 -f json
tfc alice router create alice-router -f json
tfc alice router add-interface alice-router alice-subnet
tfc alice router add-interface alice-router alice-subnet2
info "-> alice-router holds the gateways 10.0.0.1 and 10.0.1.1; new VM alice-vm3 on alice-net2:"
vm alice alice-vm3 alice-net2 alice-subnet2 10.0.1.13
wait_active "$PORT_alice_vm3"
dhcp_vms alice-vm3=10.0.1.1
ping_check alice-vm3 10.0.0.11 pass    "alice-net2 -> alice-net, across alice-router"
ttl_routed=$TTL
ping_check alice-vm1 10.0.1.13 pass    "and back"
ping_check bob-vm2   10.0.1.13 blocked "bob has no router to alice's networks"
expect_eq "${ttl_routed:-none}" 63 \
    "reply TTL ${ttl_routed:-none}: one router hop, routed in this host's br-int (no router VM)"

# ---- 9: floating IP and SNAT ---------------------------------------------------------------
say "9. Floating IP and SNAT: an external network and an outside host ($OUTSIDE_IP)"
tfc "" network create public --external --provider-network-type flat \
    --provider-physical-network physnet1 -f json
tfc "" subnet create --network public --subnet-range 172.24.4.0/24 --no-dhcp \
    --gateway "$OUTSIDE_IP" --allocation-pool start=172.24.4.10,end=172.24.4.99 public-subnet -f json
tfc alice router set alice-router --external-gateway public -f json
gw_ip=$(jq -r '.external_gateway_info.external_fixed_ips[0].ip_address' <<<"$OUT")
tfc alice floating-ip create public --port alice-web -f json
fip=$(jq -r .floating_ip_address <<<"$OUT")
info "-> alice-router's address on 'public': $gw_ip (SNAT); alice-web's floating IP: $fip"
tcp_check outside "$fip" 8080 pass "outside -> alice-web's floating IP; 'web' allows it"
src=$(seen_from alice-web 9000)
verdict "$([ -n "$src" ] && echo pass || echo blocked)" pass \
    "tcp alice-web -> outside:9000, seen from ${src:-nothing} (its floating IP)"
expect_eq "$src" "$fip" "  alice-web goes out as its floating IP"
src=$(seen_from alice-vm3 9001)
verdict "$([ -n "$src" ] && echo pass || echo blocked)" pass \
    "tcp alice-vm3 -> outside:9001, seen from ${src:-nothing} (no floating IP)"
expect_eq "$src" "$gw_ip" "  alice-vm3 goes out as the router's address (SNAT)"

# ---- 10: metadata -------------------------------------------------------------------------
say "10. Metadata: every VM asks http://169.254.169.254 and gets its own answers"
ud=$DIR/alice-vm1.user-data
printf '#cloud-config\nhostname: alice-vm1\n' > "$ud"
tfc alice instance set alice-vm1 --user-data "$ud" --key "alice=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemo alice@demo"
info "-> the instance is the ports' device_id (alice-vm1); alice-vm1 has a router: no route needed"
mdget() { ip netns exec "$NSP-$1" curl -s -m 3 "http://169.254.169.254$2" 2>/dev/null || true; }
# bob's subnet has no router: DHCP option 121 gives 169.254.169.254/32 via bob's DHCP port (the
# demo's minimal dhclient script installs only the default route, so it is added here by hand).
bob_dhcp=$(curl -fsS -H "X-Project-Id: bob" "$API/v2.0/ports?device_owner=network:dhcp" \
           | jq -r '.ports[0].fixed_ips[0].ip_address')
ip netns exec "$NSP-bob-vm1" ip route replace 169.254.169.254/32 via "$bob_dhcp" dev eth0
expect_eq "$(mdget alice-vm1 /openstack/latest/meta_data.json | jq -r '.uuid + " " + .hostname + " " + (.public_keys|keys|join(","))')" \
    "alice-vm1 alice-vm1 alice" "alice-vm1: meta_data.json has its uuid, hostname and SSH key"
expect_eq "$(mdget alice-vm1 /latest/user-data | tail -n 1)" "hostname: alice-vm1" \
    "alice-vm1: its user data (EC2 path /latest/user-data)"
expect_eq "$(mdget alice-vm2 /latest/meta-data/instance-id) $(mdget bob-vm1 /latest/meta-data/instance-id)" \
    "alice-vm2 bob-vm1" "10.0.0.12 in alice's and bob's network: each gets its own instance-id"
expect_eq "$(mdget bob-vm1 /latest/meta-data/local-ipv4)" "10.0.0.12" "bob-vm1: local-ipv4"

# ---- 11: flows ----------------------------------------------------------------------------
say "11. The flows on $BR, and who owns them"
info "Every flow's cookie names its owner: top byte = kind, the rest = the object's key."
flows=$(ovs-ofctl -O OpenFlow13 --no-stats dump-flows "$BR" | tail -n +2)
for kn in 1:pipeline 2:network 3:port 4:router 5:security-group 6:floating-ip 8:learned; do
    k=${kn%%:*}
    n=$(grep -cE "^ *cookie=0x${k}[0-9a-f]{14}," <<<"$flows" || true)
    [ "$n" = 0 ] && continue
    eg=$(grep -m1 -E "^ *cookie=0x${k}[0-9a-f]{14}," <<<"$flows" | sed 's/^ *//')
    printf '  %-15s %4s flows, e.g. %s\n' "${kn#*:}" "$n" "${eg:0:96}"
done
info "$(wc -l <<<"$flows") flows in total (ovs-ofctl -O OpenFlow13 dump-flows $BR)"
echo
# owner_flows TYPE ID N : the first N desired flows of one object, owner first.
owner_flows() {
    "$TF" flows --url "$API" --chassis "$CHASSIS" --owner "$1" "$2" 2>&1 | head -n "$3" \
        | sed -E 's/^(.*)  # ([a-z_]+) [0-9a-f-]{36} ?(.*)$/[\2 \3] \1/' | cut -c1-150 \
        | sed 's/^/    /' || true
}
info "tenantflow flows --chassis $CHASSIS --owner port <alice-vm1's port id>  (what it wants):"
owner_flows port "$PORT_alice_vm1" 5
router_id=$("$TF" --url "$API" --project alice router show alice-router -f value -c id)
info "tenantflow flows --chassis $CHASSIS --owner router <alice-router's id>:"
owner_flows router "$router_id" 3
sync=$("$TF" flows --url "$API" --chassis "$CHASSIS" --diff 2>&1 | tail -n 1) || true
info "tenantflow flows --chassis $CHASSIS --diff (desired vs installed): $sync"

say "12. Explore further"
cat <<EOF
  ip netns exec $NSP-alice-vm1 ping 10.0.0.12             # alice's VMs talk
  ip netns exec $NSP-alice-vm1 ping 10.0.0.21             # bob's VM: blocked
  ip netns exec $NSP-alice-vm3 ping 10.0.0.11             # routed by alice-router
  ip netns exec $NSP-outside nc -zv $fip 8080       # outside -> floating IP (listener: 15 min)
  ip netns exec $NSP-alice-vm1 ip addr show eth0          # what DHCP gave
  ip netns list | grep $NSP                               # the VMs and the outside host
  $TF --project alice port list
  $TF --project alice security-group-rule list --group web
  ovs-ofctl -O OpenFlow13 dump-flows $BR                  # everything on the switch
  $TF flows --url $API --chassis $CHASSIS          # desired flows with owners
  $TF flows --url $API --chassis $CHASSIS --diff   # desired vs installed
  tail -f $DIR/tenantflow.log                             # controller log
  ip netns exec $NSP-alice-vm1 curl http://169.254.169.254/openstack/latest/meta_data.json
  tail -f $DIR/metadata-agent.log                         # metadata agent log
  make demo-stop                                          # remove everything
EOF
if [ "$FAILED" != 0 ]; then
    die "$FAILED result(s) not as expected (see [UNEXPECTED] above; flows at each: $DIR/unexpected-*.flows)"
fi
say "Demo ready in $((SECONDS - T0)) s: the controller keeps running (pid $(cat "$DIR/tenantflow.pid"))."
