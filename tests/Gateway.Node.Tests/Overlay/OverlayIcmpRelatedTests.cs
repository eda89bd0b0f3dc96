using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Node.Overlay;
using Gateway.Node.Replay;
using Gateway.Node.Tests.Replay;
using Gateway.Policy;

namespace Gateway.Node.Tests.Overlay;

/// <summary>
/// ICMP errors about tracked flows pass the overlay as RELATED, at the sending node's egress and
/// the receiving node's ingress, although no rule allows them; errors about flows that were never
/// allowed are judged as packets of their own (and dropped by these policies).
/// </summary>
public sealed class OverlayIcmpRelatedTests : IDisposable
{

    private static readonly IpAddress Frontend = IpAddress.Parse("10.11.1.10");
    private static readonly IpAddress Backend = IpAddress.Parse("10.11.2.10");

    private readonly ReplayPair _pair;

    public OverlayIcmpRelatedTests()
    {
        string fixtures = ReplayFixtureTests.FixtureDirectory;
        // backend may send only to db and frontend may receive only from intruder: no rule
        // admits an ICMP error from backend to frontend.
        string policyPath = Path.Combine(fixtures, "..", "policies", "icmp-related.yaml");
        var capture = ReplayCapture.Load(Path.Combine(fixtures, ReplayFixtureGenerator.Imix));
        var policy = ReplayPolicy.Load(Path.Combine(fixtures, "endpoints.yaml"), policyPath);
        _pair = new ReplayPair(ReplayMode.Overlay, capture, policy, TimeProvider.System);
        _pair.Handshake();
    }

    public void Dispose() => _pair.Dispose();

    private static byte[] Ipv4(IpAddress source, IpAddress destination, byte protocol, ReadOnlySpan<byte> l4)
    {
        var packet = new byte[20 + l4.Length];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = protocol;
        source.WriteBytes(packet.AsSpan(12));
        destination.WriteBytes(packet.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), InternetChecksum.Compute(packet.AsSpan(0, 20)));
        l4.CopyTo(packet.AsSpan(20));
        return packet;
    }

    private static byte[] Udp(IpAddress source, ushort sourcePort, IpAddress destination, ushort destinationPort)
    {
        var udp = new byte[8 + 12];
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(2), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(4), (ushort)udp.Length);
        return Ipv4(source, destination, IpProtocol.Udp, udp);
    }

    /// <summary>What the destination's kernel answers: ICMP type 3 (code 3: port unreachable),
    /// quoting the offending packet's IP header and first 8 bytes.</summary>
    private static byte[] Unreachable(IpAddress from, byte[] offending, byte code = 3)
    {
        var icmp = new byte[8 + 28];
        icmp[0] = 3;
        icmp[1] = code;
        offending.AsSpan(0, 28).CopyTo(icmp.AsSpan(8));
        BinaryPrimitives.WriteUInt16BigEndian(icmp.AsSpan(2), InternetChecksum.Compute(icmp));
        var offendingSource = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(offending.AsSpan(12)));
        return Ipv4(from, offendingSource, IpProtocol.Icmp, icmp);
    }

    /// <summary>Sends a workload packet from one node to the other; returns (sender's result, receiver's result).</summary>
    private (OverlayResult Out, OverlayResult In) Cross(bool fromA, byte[] packet)
    {
        var (sender, receiver) = fromA ? (_pair.PipelineA!, _pair.PipelineB!) : (_pair.PipelineB!, _pair.PipelineA!);
        int offset = OverlayPipeline.Headroom;
        var buffer = new byte[offset + packet.Length + 64];
        packet.CopyTo(buffer, offset);
        var sent = sender.Outbound(buffer, offset, packet.Length);
        if (sent.Action != OverlayAction.Send)
        {
            return (sent, default);
        }
        var datagram = new byte[sent.Length + 128];
        buffer.AsSpan(sent.Offset, sent.Length).CopyTo(datagram);
        var received = receiver.Inbound(fromA ? ReplayPair.UnderlayA : ReplayPair.UnderlayB, datagram, sent.Length);
        if (received.Action == OverlayAction.Deliver)
        {
            Assert.Equal(packet, datagram.AsSpan(received.Offset, received.Length).ToArray());
        }
        return (sent, received);
    }

    [Fact]
    public void A_port_unreachable_about_an_allowed_udp_flow_passes_both_nodes_as_related()
    {
        var datagram = Udp(Frontend, 40001, Backend, 9999);
        Assert.Equal(OverlayAction.Deliver, Cross(fromA: true, datagram).In.Action);

        var (sent, received) = Cross(fromA: false, Unreachable(Backend, datagram));
        Assert.Equal(OverlayAction.Send, sent.Action);
        Assert.Equal(OverlayAction.Deliver, received.Action);
        Assert.Equal(0, _pair.PipelineB!.Drops(Direction.Egress, OverlayDrop.PolicyDenied));
        Assert.Equal(0, _pair.PipelineA!.Drops(Direction.Ingress, OverlayDrop.PolicyDenied));
    }

    [Fact]
    public void A_fragmentation_needed_about_an_allowed_tcp_flow_passes_as_related()
    {
        var syn = new byte[20];
        BinaryPrimitives.WriteUInt16BigEndian(syn, 40002);
        BinaryPrimitives.WriteUInt16BigEndian(syn.AsSpan(2), 80);
        syn[12] = 5 << 4;
        syn[13] = 0x02;
        var packet = Ipv4(Frontend, Backend, IpProtocol.Tcp, syn);
        Assert.Equal(OverlayAction.Deliver, Cross(fromA: true, packet).In.Action);
        Assert.Equal(OverlayAction.Deliver, Cross(fromA: false, Unreachable(Backend, packet, code: 4)).In.Action);
    }

    [Fact]
    public void An_icmp_error_about_a_flow_that_was_never_allowed_is_judged_by_policy_and_dropped()
    {
        // Frontend never sent to backend:7777 (its egress policy would not allow it): the "error"
        // is a packet of its own, and backend's egress policy does not admit it.
        var forged = Unreachable(Backend, Udp(Frontend, 40003, Backend, 7777));
        var (sent, _) = Cross(fromA: false, forged);
        Assert.Equal(OverlayAction.Drop, sent.Action);
        Assert.Equal(OverlayDrop.PolicyDenied, sent.Drop);
    }

    [Fact]
    public void An_error_about_an_expired_or_unknown_flow_is_not_related_at_the_receiving_node()
    {
        // The sending node tracked the flow, the receiving node did not (e.g. it restarted):
        // node A's ingress judges the error by frontend's ingress policy, which refuses it.
        var datagram = Udp(Frontend, 40004, Backend, 9999);
        Assert.Equal(OverlayAction.Deliver, Cross(fromA: true, datagram).In.Action);
        var conntrackA = _pair.PipelineA!.Policy.Conntrack;
        Assert.True(conntrackA.Collect(long.MaxValue, conntrackA.Capacity) > 0);
        var (sent, received) = Cross(fromA: false, Unreachable(Backend, datagram));
        Assert.Equal(OverlayAction.Send, sent.Action);
        Assert.Equal(OverlayDrop.PolicyDenied, received.Drop);
    }
}
