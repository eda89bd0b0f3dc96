using Gateway.Datapath.Devices;
using Gateway.Node.Metrics;
using Gateway.Node.Overlay;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// The node's own counters (what the engine, the overlay and the devices do not count
/// themselves: queue overflows, packets too long to seal) and the instruments that publish all
/// of them through <see cref="GatewayMeters"/>. The data path bumps the fields directly; the
/// observable instruments read them when a listener collects (a scrape, dotnet-counters).
/// </summary>
/// <remarks>
/// Adding a metric: one call in the constructor (or in a method it calls for an optional part),
/// <c>meters.Counter(area, "gateway_..._total", help, () =&gt; ...)</c> or <c>meters.Gauge(...)</c>,
/// returning one <c>meters.Sample(value, ("label", "value"))</c> per series; then a row in
/// docs/metrics.md (a test compares a scrape against that table).
/// </remarks>
internal sealed class NodeMetrics
{
    public long ReceiveQueueFull;
    /// <summary>Packets from TUN without room behind them for padding and tag (beyond the MTU).</summary>
    public long TunPacketTooLong;
    /// <summary>The handshake worker's queue and the engine's output (their drops and backlog); set
    /// once they exist, read at scrape time.</summary>
    public HandshakeQueue? Handshakes;
    public HandshakeTimers? Timers;

    public NodeMetrics(GatewayMeters meters, WireGuardEngine engine, OverlayRuntime? overlay, IBatchTunDevice tun, IUdpBind bind)
    {
        AddInterface(meters, engine, tun, bind);
        if (overlay is not null)
        {
            AddOverlay(meters, overlay);
        }
    }

    private void AddInterface(GatewayMeters meters, WireGuardEngine engine, IBatchTunDevice tun, IUdpBind bind)
    {
        const string area = GatewayMeters.NodeArea;
        meters.Counter(area, "gateway_peer_rx_bytes_total", "Bytes received from the peer (WireGuard transport messages).",
            () => engine.Peers.Select(peer => meters.Sample(peer.RxBytes, ("peer", peer.PublicKey.ToBase64()))));
        meters.Counter(area, "gateway_peer_tx_bytes_total", "Bytes sent to the peer (WireGuard transport messages).",
            () => engine.Peers.Select(peer => meters.Sample(peer.TxBytes, ("peer", peer.PublicKey.ToBase64()))));
        meters.Gauge(area, "gateway_peer_last_handshake_seconds", "Seconds since the latest completed handshake with the peer (absent before the first).",
            () =>
            {
                var now = DateTimeOffset.UtcNow;
                return engine.Peers.Where(peer => peer.LastHandshake is not null)
                    .Select(peer => meters.Sample(Math.Max(0, (now - peer.LastHandshake!.Value).TotalSeconds), ("peer", peer.PublicKey.ToBase64())));
            });
        meters.Counter(area, "gateway_handshakes_total", "Handshake messages processed, by message type.",
            () =>
            [
                meters.Sample(engine.GetCount(TunnelEvent.InitiationProcessed), ("type", "initiation")),
                meters.Sample(engine.GetCount(TunnelEvent.ResponseProcessed), ("type", "response")),
                meters.Sample(engine.GetCount(TunnelEvent.CookieReplyProcessed), ("type", "cookie_reply")),
            ]);
        meters.Counter(area, "gateway_drop_count_total", "Packets and datagrams dropped, by reason.",
            () =>
            {
                var device = tun.Counters;
                var samples = new List<System.Diagnostics.Metrics.Measurement<long>>();
                for (var reason = TunnelEvent.NotIpPacket; reason < TunnelEvent.Count; reason++)
                {
                    samples.Add(meters.Sample(engine.GetCount(reason), ("reason", reason.ToString())));
                }
                samples.Add(meters.Sample(Volatile.Read(ref device.WriteFailures), ("reason", "TunWriteFailed")));
                samples.Add(meters.Sample(bind.OversizedDatagrams, ("reason", "OversizedDatagram")));
                samples.Add(meters.Sample(Interlocked.Read(ref ReceiveQueueFull), ("reason", "ReceiveQueueFull")));
                samples.Add(meters.Sample(Volatile.Read(ref device.OffloadInvalid), ("reason", "TunOffloadInvalid")));
                samples.Add(meters.Sample(Interlocked.Read(ref TunPacketTooLong), ("reason", "TunPacketTooLong")));
                samples.Add(meters.Sample(Handshakes is { } queue ? Interlocked.Read(ref queue.QueueFull) : 0, ("reason", "HandshakeQueueFull")));
                samples.Add(meters.Sample(Timers is { } timers ? Interlocked.Read(ref timers.DeferredFull) : 0, ("reason", "HandshakeOutputFull")));
                return samples;
            });
        meters.Counter(area, "gateway_cookie_replies_sent_total", "Cookie replies sent to handshake initiators while under load.",
            () => [meters.Sample(engine.GetCount(TunnelEvent.CookieReplySent))]);
        meters.Gauge(area, "gateway_handshake_queue_length", "Handshake messages waiting for the handshake worker.",
            () => [meters.Sample((double)(Handshakes?.Count ?? 0))]);
        meters.Counter(area, "gateway_tun_super_packets_total", "TCP and UDP super-packets moved through the TUN device with offloads: read and cut into packets, or merged from packets and written.",
            () =>
            [
                meters.Sample(Volatile.Read(ref tun.Counters.SuperPacketsRead), ("direction", "read")),
                meters.Sample(Volatile.Read(ref tun.Counters.SuperPacketsWritten), ("direction", "written")),
            ]);
        if (bind is UdpBatchSocket socket)
        {
            meters.Counter(area, "gateway_udp_offload_messages_total", "UDP messages that carried more than one datagram: sent with GSO, or received coalesced by GRO.",
                () =>
                [
                    meters.Sample(socket.GsoSends, ("kind", "gso_send")),
                    meters.Sample(socket.GroReceives, ("kind", "gro_receive")),
                ]);
        }
        meters.Counter(area, "gateway_forward_count_total", "Packets forwarded, by direction.",
            () =>
            [
                meters.Sample(engine.GetCount(TunnelEvent.TransportSent), ("direction", "egress")),
                meters.Sample(engine.GetCount(TunnelEvent.TransportDelivered), ("direction", "ingress")),
            ]);
    }

    private static readonly Direction[] Directions = [Direction.Ingress, Direction.Egress];

    private static void AddOverlay(GatewayMeters meters, OverlayRuntime overlay)
    {
        // Cilium's metric names (cilium_ prefix dropped for gateway_): drops and forwards by
        // reason and direction, policy verdicts, conntrack entries, lost flow events.
        const string area = GatewayMeters.PolicyArea;
        var pipeline = overlay.Pipeline;
        meters.Counter(area, "gateway_overlay_drop_count_total", "Workload packets dropped by the overlay, by Cilium drop reason and direction.",
            () =>
                from direction in Directions
                from reason in Enum.GetValues<OverlayDrop>()
                where reason != OverlayDrop.None
                select meters.Sample(pipeline.Drops(direction, reason), ("reason", OverlayDropNames.Name(reason)), ("direction", Upper(direction))));
        meters.Counter(area, "gateway_overlay_forward_count_total", "Workload packets forwarded by the overlay, by direction.",
            () => Directions.Select(direction => meters.Sample(pipeline.Forwards(direction), ("direction", Upper(direction)))));
        meters.Counter(area, "gateway_policy_verdict_total", "Policy verdicts on new flows, by direction and outcome.",
            () => Directions.SelectMany(direction => new[]
            {
                meters.Sample(PolicyVerdicts(pipeline, direction, allowed: true), ("direction", Upper(direction)), ("verdict", "allowed")),
                meters.Sample(PolicyVerdicts(pipeline, direction, allowed: false), ("direction", Upper(direction)), ("verdict", "denied")),
            }));
        meters.Gauge(area, "gateway_conntrack_entries", "Connection tracking entries in use.",
            () => [meters.Sample((double)overlay.Policy.Conntrack.Count)]);
        meters.Counter(area, "gateway_flow_events_lost_total", "Flow events lost because the flow log could not keep up.",
            () => [meters.Sample(overlay.Policy.Events.Lost)]);
        meters.Counter(area, "gateway_policy_loads_total", "Policy loads, by outcome.",
            () =>
            [
                meters.Sample(overlay.PolicyLoads, ("outcome", "success")),
                meters.Sample(overlay.PolicyLoadFailures, ("outcome", "failure")),
            ]);
    }

    private static string Upper(Direction direction) => direction == Direction.Ingress ? "INGRESS" : "EGRESS";

    private static long PolicyVerdicts(OverlayPipeline pipeline, Direction direction, bool allowed) =>
        allowed
            ? pipeline.PolicyAllowed(direction)
            : pipeline.Drops(direction, OverlayDrop.PolicyDenied) + pipeline.Drops(direction, OverlayDrop.PolicyDeny);
}
