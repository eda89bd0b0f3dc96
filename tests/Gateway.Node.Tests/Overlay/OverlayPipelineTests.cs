using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Node.Overlay;
using Gateway.Node.Replay;
using Gateway.Node.Tests.Replay;
using Gateway.Tunnel;

namespace Gateway.Node.Tests.Overlay;

/// <summary>The overlay pipeline between two in-memory nodes (the replay's pair): offsets of what it
/// asks the caller to send, and the split halves a worker pool uses.</summary>
public sealed class OverlayPipelineTests : IDisposable
{
    private readonly ReplayPair _pair;

    public OverlayPipelineTests()
    {
        string dir = ReplayFixtureTests.FixtureDirectory;
        var capture = ReplayCapture.Load(Path.Combine(dir, ReplayFixtureGenerator.Imix));
        var policy = ReplayPolicy.Load(Path.Combine(dir, "endpoints.yaml"), Path.Combine(dir, "policy.yaml"));
        _pair = new ReplayPair(ReplayMode.Overlay, capture, policy, TimeProvider.System);
        _pair.Handshake();
    }

    public void Dispose() => _pair.Dispose();

    private static byte[] Udp4(IpAddress source, IpAddress destination, int payload)
    {
        var packet = new byte[28 + payload];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = 17;
        source.WriteBytes(packet.AsSpan(12));
        destination.WriteBytes(packet.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), 40000);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), 7);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(24), (ushort)(8 + payload));
        packet.AsSpan(28).Fill(0x5a);
        return packet;
    }

    /// <summary>A packet between the nodes' own tunnel addresses (no workload: no VXLAN, only
    /// WireGuard), placed at <paramref name="offset"/> in a buffer with room behind it.</summary>
    private static (byte[] Packet, byte[] Buffer) NodePacket(int payload, int offset)
    {
        var packet = Udp4(ReplayPair.TunnelA, ReplayPair.TunnelB, payload);
        var buffer = new byte[offset + packet.Length + 64];
        packet.CopyTo(buffer, offset);
        return (packet, buffer);
    }

    [Theory]
    [InlineData(OverlayPipeline.Headroom)]
    [InlineData(OverlayPipeline.Headroom + 37)]
    public void Node_traffic_goes_out_as_plain_WireGuard_at_the_offset_the_result_names(int packetOffset)
    {
        var (packet, buffer) = NodePacket(100, packetOffset);
        var sent = _pair.PipelineA!.Outbound(buffer, packetOffset, packet.Length);
        Assert.Equal(OverlayAction.Send, sent.Action);
        Assert.Equal(packetOffset - Messages.TransportHeaderSize, sent.Offset);
        var datagram = buffer.AsSpan(sent.Offset, sent.Length).ToArray();
        Assert.Equal(MessageType.TransportData, Messages.Classify(datagram));

        var received = _pair.PipelineB!.Inbound(ReplayPair.UnderlayA, datagram, datagram.Length);
        Assert.Equal(OverlayAction.Deliver, received.Action);
        Assert.Equal(packet, datagram.AsSpan(received.Offset, received.Length).ToArray());
    }

    [Theory]
    [InlineData(OverlayPipeline.Headroom)]
    [InlineData(OverlayPipeline.Headroom + 37)]
    public void Split_halves_carry_node_traffic_like_the_whole_call(int packetOffset)
    {
        var (packet, buffer) = NodePacket(300, packetOffset);
        var begun = _pair.PipelineA!.BeginOutbound(buffer, packetOffset, packet.Length, out var seal);
        Assert.Equal(OverlayAction.Send, begun.Action);
        Assert.True(seal.IsPending);
        Assert.True(_pair.EngineA.CompleteEncapsulate(seal, buffer.AsSpan(begun.Offset)));
        var datagram = buffer.AsSpan(begun.Offset, begun.Length).ToArray();

        var first = _pair.PipelineB!.BeginInbound(ReplayPair.UnderlayA, datagram, datagram.Length, out var open);
        Assert.True(open.IsPending, first.ToString());
        var received = _pair.PipelineB.CompleteInbound(open, ReplayPair.UnderlayA, datagram, datagram.Length);
        Assert.Equal(OverlayAction.Deliver, received.Action);
        Assert.Equal(packet, datagram.AsSpan(received.Offset, received.Length).ToArray());
    }
}
