"""The smallest os-ken app answering ARP requests by packet-out: bench_packet_in's same-run
baseline (issue 14). It does what tenantflow's ARP responder does on a punted request — parse
the frame, look the target address up, build the reply with os-ken's packet library, send it
back out of the port it came from — and nothing else (no topology, no rate limits, no metrics).

Answers: MINIMAL_ARP_ANSWERS="ip=mac,ip=mac". Run: python bench/minimal_arp_app.py PORT
(listens for OpenFlow 1.3 on 0.0.0.0:PORT, os-ken's default hub).
"""
from __future__ import annotations

import os
import sys

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import MAIN_DISPATCHER, set_ev_cls
from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ofproto_v1_3

ANSWERS = dict(kv.split("=", 1) for kv in os.environ.get("MINIMAL_ARP_ANSWERS", "").split(",") if "=" in kv)


class MinimalArp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev) -> None:
        msg = ev.msg
        dp = msg.datapath
        pkt = packet.Packet(msg.data)
        req = pkt.get_protocol(arp.arp)
        if req is None or req.opcode != arp.ARP_REQUEST:
            return
        mac = ANSWERS.get(req.dst_ip)
        eth = pkt.get_protocol(ethernet.ethernet)
        if mac is None or eth is None:
            return
        reply = packet.Packet()
        reply.add_protocol(ethernet.ethernet(ethertype=eth.ethertype, dst=eth.src, src=mac))
        reply.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=mac, src_ip=req.dst_ip,
                                   dst_mac=req.src_mac, dst_ip=req.src_ip))
        reply.serialize()
        ofp, parser = dp.ofproto, dp.ofproto_parser
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                                        actions=[parser.OFPActionOutput(msg.match["in_port"])], data=reply.data))


def main() -> None:
    from os_ken import cfg
    cfg.CONF(["--ofp-tcp-listen-port", sys.argv[1]], project="os_ken")
    app_manager.AppManager.run_apps([__name__ if __name__ != "__main__" else "bench.minimal_arp_app",
                                     "os_ken.controller.ofp_handler"])


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
