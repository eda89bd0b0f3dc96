using Gateway.Datapath.Devices;
using Gateway.Node.Metrics;
using Gateway.Node.Overlay;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// The node's own counters (what the engine, the overlay and the devices do not count
/// themselves: queue overflows, packets too long to seal) and the Prometheus text of all of
/// them. The data path bumps the fields directly; <see cref="Render"/> reads them when scraped.
/// </summary>
internal sealed class NodeMetrics(WireGuardEngine engine, Func<string> interfaceName, OverlayRuntime? overlay, IBatchTunDevice tun, IUdpBind bind)
{
    public long ReceiveQueueFull;
    /// <summary>Packets from TUN without room behind them for padding and tag (beyond the MTU).</summary>
    public long TunPacketTooLong;

    public string Render()
    {
        string name = interfaceName();
        var text = new PrometheusText();
        var now = DateTimeOffset.UtcNow;
        text.Describe("gateway_peer_rx_bytes_total", "counter", "Bytes received from the peer (WireGuard transport messages).");
        foreach (var peer in engine.Peers)
        {
            text.Sample("gateway_peer_rx_bytes_total", peer.RxBytes, ("interface", name), ("peer", peer.PublicKey.ToBase64()));
        }
        text.Describe("gateway_peer_tx_bytes_total", "counter", "Bytes sent to the peer (WireGuard transport messages).");
        foreach (var peer in engine.Peers)
        {
            text.Sample("gateway_peer_tx_bytes_total", peer.TxBytes, ("interface", name), ("peer", peer.PublicKey.ToBase64()));
        }
        text.Describe("gateway_peer_last_handshake_seconds", "gauge", "Seconds since the latest completed handshake with the peer (absent before the first).");
        foreach (var peer in engine.Peers)
        {
            if (peer.LastHandshake is { } last)
            {
                text.Sample("gateway_peer_last_handshake_seconds", Math.Max(0, (now - last).TotalSeconds), ("interface", name), ("peer", peer.PublicKey.ToBase64()));
            }
        }
        text.Describe("gateway_handshakes_total", "counter", "Handshake messages processed, by message type.");
        text.Sample("gateway_handshakes_total", engine.GetCount(TunnelEvent.InitiationProcessed), ("interface", name), ("type", "initiation"));
        text.Sample("gateway_handshakes_total", engine.GetCount(TunnelEvent.ResponseProcessed), ("interface", name), ("type", "response"));
        text.Sample("gateway_handshakes_total", engine.GetCount(TunnelEvent.CookieReplyProcessed), ("interface", name), ("type", "cookie_reply"));
        text.Describe("gateway_drop_count_total", "counter", "Packets and datagrams dropped, by reason.");
        for (var reason = TunnelEvent.NotIpPacket; reason < TunnelEvent.Count; reason++)
        {
            text.Sample("gateway_drop_count_total", engine.GetCount(reason), ("interface", name), ("reason", reason.ToString()));
        }
        var device = tun.Counters;
        text.Sample("gateway_drop_count_total", Volatile.Read(ref device.WriteFailures), ("interface", name), ("reason", "TunWriteFailed"));
        text.Sample("gateway_drop_count_total", bind.OversizedDatagrams, ("interface", name), ("reason", "OversizedDatagram"));
        text.Sample("gateway_drop_count_total", Interlocked.Read(ref ReceiveQueueFull), ("interface", name), ("reason", "ReceiveQueueFull"));
        text.Sample("gateway_drop_count_total", Volatile.Read(ref device.OffloadInvalid), ("interface", name), ("reason", "TunOffloadInvalid"));
        text.Sample("gateway_drop_count_total", Interlocked.Read(ref TunPacketTooLong), ("interface", name), ("reason", "TunPacketTooLong"));
        text.Describe("gateway_tun_super_packets_total", "counter", "TCP and UDP super-packets moved through the TUN device with offloads: read and cut into packets, or merged from packets and written.");
        text.Sample("gateway_tun_super_packets_total", Volatile.Read(ref device.SuperPacketsRead), ("interface", name), ("direction", "read"));
        text.Sample("gateway_tun_super_packets_total", Volatile.Read(ref device.SuperPacketsWritten), ("interface", name), ("direction", "written"));
        if (bind is UdpBatchSocket socket)
        {
            text.Describe("gateway_udp_offload_messages_total", "counter", "UDP messages that carried more than one datagram: sent with GSO, or received coalesced by GRO.");
            text.Sample("gateway_udp_offload_messages_total", socket.GsoSends, ("interface", name), ("kind", "gso_send"));
            text.Sample("gateway_udp_offload_messages_total", socket.GroReceives, ("interface", name), ("kind", "gro_receive"));
        }
        text.Describe("gateway_forward_count_total", "counter", "Packets forwarded, by direction.");
        text.Sample("gateway_forward_count_total", engine.GetCount(TunnelEvent.TransportSent), ("interface", name), ("direction", "egress"));
        text.Sample("gateway_forward_count_total", engine.GetCount(TunnelEvent.TransportDelivered), ("interface", name), ("direction", "ingress"));
        if (overlay is not null)
        {
            RenderOverlay(text, name, overlay);
        }
        return text.ToString();
    }

    private static void RenderOverlay(PrometheusText text, string name, OverlayRuntime overlay)
    {
        var pipeline = overlay.Pipeline;
        // Cilium's metric names (cilium_ prefix dropped for gateway_): drops and forwards by
        // reason and direction, policy verdicts, conntrack entries, lost flow events.
        text.Describe("gateway_overlay_drop_count_total", "counter", "Workload packets dropped by the overlay, by Cilium drop reason and direction.");
        foreach (var direction in new[] { Gateway.Policy.Direction.Ingress, Gateway.Policy.Direction.Egress })
        {
            foreach (var reason in Enum.GetValues<OverlayDrop>())
            {
                if (reason == OverlayDrop.None)
                {
                    continue;
                }
                text.Sample("gateway_overlay_drop_count_total", pipeline.Drops(direction, reason),
                    ("interface", name), ("reason", OverlayDropNames.Name(reason)), ("direction", direction.ToString().ToUpperInvariant()));
            }
        }
        text.Describe("gateway_overlay_forward_count_total", "counter", "Workload packets forwarded by the overlay, by direction.");
        text.Sample("gateway_overlay_forward_count_total", pipeline.Forwards(Gateway.Policy.Direction.Ingress), ("interface", name), ("direction", "INGRESS"));
        text.Sample("gateway_overlay_forward_count_total", pipeline.Forwards(Gateway.Policy.Direction.Egress), ("interface", name), ("direction", "EGRESS"));
        text.Describe("gateway_policy_verdict_total", "counter", "Policy verdicts on new flows, by direction and outcome.");
        foreach (var direction in new[] { Gateway.Policy.Direction.Ingress, Gateway.Policy.Direction.Egress })
        {
            string d = direction.ToString().ToUpperInvariant();
            text.Sample("gateway_policy_verdict_total", PolicyVerdicts(pipeline, direction, allowed: true), ("interface", name), ("direction", d), ("verdict", "allowed"));
            text.Sample("gateway_policy_verdict_total", PolicyVerdicts(pipeline, direction, allowed: false), ("interface", name), ("direction", d), ("verdict", "denied"));
        }
        text.Describe("gateway_conntrack_entries", "gauge", "Connection tracking entries in use.");
        text.Sample("gateway_conntrack_entries", overlay.Policy.Conntrack.Count, ("interface", name));
        text.Describe("gateway_flow_events_lost_total", "counter", "Flow events lost because the flow log could not keep up.");
        text.Sample("gateway_flow_events_lost_total", overlay.Policy.Events.Lost, ("interface", name));
        text.Describe("gateway_policy_loads_total", "counter", "Policy loads, by outcome.");
        text.Sample("gateway_policy_loads_total", overlay.PolicyLoads, ("interface", name), ("outcome", "success"));
        text.Sample("gateway_policy_loads_total", overlay.PolicyLoadFailures, ("interface", name), ("outcome", "failure"));
        overlay.RenderServiceMetrics(text, name);
    }

    private static long PolicyVerdicts(OverlayPipeline pipeline, Gateway.Policy.Direction direction, bool allowed) =>
        allowed
            ? pipeline.PolicyAllowed(direction)
            : pipeline.Drops(direction, OverlayDrop.PolicyDenied) + pipeline.Drops(direction, OverlayDrop.PolicyDeny);
}
