#!/bin/bash
# Tear the `make demo` set-up down: controller, processes in the VMs (nc listeners), VM and outside
# namespaces, their veths and ports on br-int (uplink included), br-int itself if the demo made it,
# Open vSwitch if the demo started it. Idempotent.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${TF_DEMO_DIR:-$(pwd)/run/demo}
BR=br-int
if [ ! -f "$DIR/state" ]; then
    echo "demo-stop: no demo state in $DIR (nothing to stop)"
    exit 0
fi
get()  { grep "^$1=" "$DIR/state" | cut -d= -f2-; }

# The metadata agent first: on SIGTERM it removes tap-meta and its namespace itself.
for p in $(get metapid); do
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in
        tenantflow|python*)
            kill -TERM "$p" 2>/dev/null
            for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            echo "demo-stop: metadata agent (pid $p) stopped" ;;
    esac
done
ovs-vsctl --timeout=5 --if-exists del-port "$BR" tap-meta 2>/dev/null
pid=$(get pid | tail -n1)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "demo-stop: controller (pid $pid) stopped"
fi
# Processes the demo started inside the VMs (nc listeners). Checked by name first: a pid
# recorded long ago may belong to someone else by now.
for p in $(get proc); do
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in
        timeout|nc) kill -TERM "$p" 2>/dev/null ;;
    esac
done
for tap in $(get tap); do
    ovs-vsctl --timeout=5 --if-exists del-port "$BR" "$tap" 2>/dev/null
    ip link del "$tap" 2>/dev/null
done
for ns in $(get ns); do
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
done
echo "demo-stop: VM namespaces removed"
if [ -z "$(get bridge_existed)" ]; then
    ovs-vsctl --timeout=5 --if-exists del-br "$BR" && echo "demo-stop: $BR removed"
fi
if [ -n "$(get ovs_started)" ]; then
    scripts/ovs-stop
fi
rm -rf "$DIR/state" "$DIR/tenantflow.pid" "$DIR/dhcp" "$DIR"/outside-*.log
echo "demo-stop: done (log kept: $DIR/tenantflow.log)"
