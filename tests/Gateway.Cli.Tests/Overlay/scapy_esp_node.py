#!/usr/bin/python3
"""A second IPsec node made of scapy (scapy.layers.ipsec, an independent ESP implementation) for
Gateway's daemon interop test. It derives the node-pair keys with Cilium's formula itself
(sha256(G || src ip || dst ip || src boot id || dst boot id)[:len(G)]), sends ICMP echo requests
from one of its pods to a pod on the Gateway node as VXLAN (VNI = the pod's identity) in ESP tunnel
mode, captures the ESP the Gateway node sends back, opens it and reports what is inside.

usage: scapy_esp_node.py GLOBALKEYHEX SELF_IP GATEWAY_IP SELF_BOOT GATEWAY_BOOT IFACE VNI
                         SELF_TUNNEL GATEWAY_TUNNEL POD_SRC POD_DST COUNT PCAP_OUT
prints one JSON line per ESP packet received from the Gateway node, then "sent N".
"""
import hashlib
import json
import socket
import sys
import time

from scapy.all import AsyncSniffer, Ether, ICMP, IP, Raw, UDP, bind_layers, send, wrpcap
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.vxlan import VXLAN

(g_hex, self_ip, gw_ip, self_boot, gw_boot, iface, vni, self_tunnel, gw_tunnel,
 pod_src, pod_dst, count, pcap_out) = sys.argv[1:14]
g = bytes.fromhex(g_hex)
vni, count = int(vni), int(count)


def node_key(src, dst, src_boot, dst_boot):
    h = hashlib.sha256 if len(g) <= 32 else hashlib.sha512
    data = g + socket.inet_aton(src) + socket.inet_aton(dst) + src_boot[:36].encode() + dst_boot[:36].encode()
    return h(data).digest()[:len(g)]


bind_layers(UDP, VXLAN, dport=8472)
out_sa = SecurityAssociation(ESP, spi=3, crypt_algo='AES-GCM', crypt_key=node_key(self_ip, gw_ip, self_boot, gw_boot),
                             crypt_icv_size=16, auth_algo='NULL', tunnel_header=IP(src=self_ip, dst=gw_ip), esn_en=True)
in_sa = SecurityAssociation(ESP, spi=3, crypt_algo='AES-GCM', crypt_key=node_key(gw_ip, self_ip, gw_boot, self_boot),
                            crypt_icv_size=16, auth_algo='NULL', tunnel_header=IP(src=gw_ip, dst=self_ip), esn_en=True)

received = []


def on_packet(p):
    if p.haslayer(IP) and p[IP].src == gw_ip:
        received.append(p)


sniffer = AsyncSniffer(iface=iface, filter='ip proto 50', prn=on_packet, store=True)
sniffer.start()
time.sleep(1)  # the capture socket is open before the first packet leaves
for i in range(count):
    inner = (IP(src=self_tunnel, dst=gw_tunnel) / UDP(sport=40000 + i, dport=8472) / VXLAN(vni=vni, flags=0x08) /
             Ether(dst='02:47:57:fa:00:01', src='02:47:57:fa:00:02') /
             IP(src=pod_src, dst=pod_dst) / ICMP(type=8, id=0x4757, seq=i) / Raw(b'ipsec-interop-%d' % i))
    send(out_sa.encrypt(IP(bytes(inner))), verbose=0)
    time.sleep(0.2)
deadline = time.time() + 30
while time.time() < deadline and len(received) < count:
    time.sleep(0.2)
packets = sniffer.stop()
wrpcap(pcap_out, packets)
for p in packets:
    if not p.haslayer(ESP) or p[IP].src != gw_ip:
        continue
    try:
        opened = in_sa.decrypt(IP(bytes(p[IP])))
    except Exception as e:  # reported, the C# side asserts
        print(json.dumps({'error': '%s %s' % (type(e).__name__, e)}))
        continue
    report = {'spi': p[ESP].spi, 'seq': p[ESP].seq, 'outer_src': opened.src, 'outer_dst': opened.dst}
    if opened.haslayer(VXLAN):
        report['vni'] = opened[VXLAN].vni
        pod = opened[VXLAN].payload[IP] if opened[VXLAN].payload.haslayer(IP) else None
        if pod is not None:
            report.update({'src': pod.src, 'dst': pod.dst, 'icmp_type': pod[ICMP].type if pod.haslayer(ICMP) else None,
                           'payload': bytes(pod[Raw].load).decode(errors='replace') if pod.haslayer(Raw) else ''})
    print(json.dumps(report))
print('sent %d' % count)
