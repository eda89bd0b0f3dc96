using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Node.Daemon;
using Gateway.Node.Overlay;
using Gateway.Tunnel;
using Gateway.Tunnel.Esp;

namespace Gateway.Node.Ipsec;

/// <summary>
/// Overlay egress in IPsec mode: the same steps as WireGuard mode up to the VXLAN framing
/// (<see cref="OverlayPipeline.FrameOutbound"/>: parse, strict mode, services, egress policy, VNI =
/// source identity), then ESP tunnel mode to the destination node's underlay address. Node
/// traffic (not from a workload) to a peer's tunnel address or pods goes into ESP as it is. The
/// seal runs here, in read order on the reader thread (ESP sequence numbers in send order); the
/// datagram leaves through the raw ESP bind to (node address, port 0). No allocation.
/// </summary>
public sealed class EspEgress(OverlayRuntime runtime, IpsecOverlay ipsec) : IEgressStage
{
    private readonly OverlayPipeline _pipeline = runtime.Pipeline;

    /// <summary>VXLAN (50) and the ESP header and IV (16) in front of a workload packet.</summary>
    public int Headroom => OverlayPipeline.Headroom;

    public StageResult Begin(Span<byte> slot, int length, out SealTicket ticket)
    {
        ticket = default;
        var framed = _pipeline.FrameOutbound(slot, Headroom, length, out var peer);
        if (framed.Action == OverlayAction.Deliver)
        {
            // For a pod of this node (a local backend and its replies, the ICMP unreachable of a VIP
            // without backends): to the kernel, as in WireGuard mode.
            runtime.Inject(slot.Slice(framed.Offset, framed.Length));
            return default;
        }
        if (framed.Action != OverlayAction.Send)
        {
            return OverlayEgress.ToStage(framed);
        }
        if (peer is null && !(TryReadDestination(slot.Slice(framed.Offset, framed.Length), out var destination) &&
                              _pipeline.TryRouteNodeTraffic(destination, out peer)))
        {
            _pipeline.CountOutbound(OverlayResult.Dropped(OverlayDrop.NoTunnelEndpoint));
            return default;
        }
        if (!ipsec.TryGetNode(peer.PublicKey, out var node))
        {
            // A node without an underlay address or boot id: no SA to seal with.
            _pipeline.CountOutbound(OverlayResult.Dropped(OverlayDrop.Tunnel));
            return default;
        }
        var sealedPacket = ipsec.Tunnel.Encapsulate(node, slot, framed.Offset, framed.Length);
        if (!sealedPacket.IsOk)
        {
            _pipeline.CountOutbound(OverlayResult.Dropped(OverlayDrop.Tunnel));
            return default;
        }
        var endpoint = new IpEndpoint(node, 0);
        _pipeline.CountOutbound(new OverlayResult(OverlayAction.Send, sealedPacket.Offset, sealedPacket.Length, endpoint, OverlayDrop.None, TunnelEvent.None));
        return new StageResult(StageAction.Send, sealedPacket.Offset, sealedPacket.Length, endpoint);
    }

    public void EndBatch() => runtime.FlowLog?.Notify();

    /// <summary>The destination address of an IPv4 or IPv6 packet (the pipeline parsed it already).</summary>
    private static bool TryReadDestination(ReadOnlySpan<byte> packet, out IpAddress destination)
    {
        destination = default;
        if (packet.Length >= 20 && packet[0] >> 4 == 4)
        {
            destination = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(packet[16..]));
            return true;
        }
        if (packet.Length >= 40 && packet[0] >> 4 == 6)
        {
            destination = IpAddress.FromBytes(packet.Slice(24, 16));
            return true;
        }
        return false;
    }
}

/// <summary>
/// Overlay ingress in IPsec mode: an ESP packet from a node's underlay address is opened by the
/// SA for (SPI, sender) (replay window, ICV, padding; every drop counted by type), then the same
/// checks as WireGuard mode (<see cref="OverlayPipeline.AcceptInbound"/>: VXLAN from that node's
/// tunnel address, the VNI bound to the node, ingress policy). Runs on the crypto workers in
/// parallel (the SA locks its window); results are delivered in arrival order by the receive
/// path. An ARP reply for the sender is sealed back to it. No allocation.
/// </summary>
public sealed class EspIngress(OverlayRuntime runtime, IpsecOverlay ipsec) : IIngressStage
{
    private readonly OverlayPipeline _pipeline = runtime.Pipeline;

    public StageResult Begin(in IpEndpoint source, Span<byte> slot, int length, out OpenTicket ticket)
    {
        ticket = default;
        var opened = ipsec.Tunnel.Decapsulate(source.Address, slot[..length]);
        if (!opened.IsOk)
        {
            _pipeline.CountInbound(OverlayResult.Dropped(OverlayDrop.Tunnel));
            return default;
        }
        PublicKey? sender = ipsec.TryGetSender(source.Address, out var key) ? key : null;
        var accepted = _pipeline.AcceptInbound(slot, opened.Offset, opened.Length, sender, TunnelEvent.None);
        if (accepted.Action != OverlayAction.Send)
        {
            return OverlayEgress.ToStage(accepted);
        }
        var reply = ipsec.Tunnel.Encapsulate(source.Address, slot, accepted.Offset, accepted.Length);
        return reply.IsOk ? new StageResult(StageAction.Send, reply.Offset, reply.Length, new IpEndpoint(source.Address, 0)) : default;
    }

    /// <summary>Never called: <see cref="Begin"/> finishes every packet (no ticket is left pending).</summary>
    public StageResult Complete(in OpenTicket ticket, in IpEndpoint source, Span<byte> slot, int length) => default;

    public void EndBatch() => runtime.FlowLog?.Notify();
}
