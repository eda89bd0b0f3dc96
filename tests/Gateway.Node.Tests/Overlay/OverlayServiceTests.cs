using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.LoadBalancer;
using Gateway.Node.Overlay;
using Gateway.Node.Replay;
using Gateway.Node.Tests.Replay;
using Gateway.Policy;

namespace Gateway.Node.Tests.Overlay;

/// <summary>
/// Services in the overlay pipeline between two in-memory nodes: node A (frontends, intruder)
/// reaches a ClusterIP whose backends live on node B; DNAT happens before egress policy, replies
/// come back from the VIP, and a VIP without backends answers with ICMP port unreachable.
/// </summary>
public sealed class OverlayServiceTests : IDisposable
{
    private static readonly IpAddress Vip = IpAddress.Parse("10.96.0.20");
    private static readonly IpAddress EmptyVip = IpAddress.Parse("10.96.0.99");
    private readonly ReplayPair _pair;

    private const string Services = """
        apiVersion: v1
        kind: Service
        metadata: {name: backend}
        spec: {clusterIP: 10.96.0.20, selector: {app: backend}, ports: [{port: 80, targetPort: 80}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: empty}
        spec: {clusterIP: 10.96.0.99, selector: {app: none}, ports: [{port: 80}]}
        """;

    public OverlayServiceTests()
    {
        string dir = ReplayFixtureTests.FixtureDirectory;
        var capture = ReplayCapture.Load(Path.Combine(dir, ReplayFixtureGenerator.Imix));
        var policy = ReplayPolicy.Load(Path.Combine(dir, "endpoints.yaml"), Path.Combine(dir, "policy.yaml"));
        _pair = new ReplayPair(ReplayMode.Overlay, capture, policy, TimeProvider.System);
        _pair.Handshake();
        var endpoints = EndpointFile.Load(Path.Combine(dir, "endpoints.yaml"), new IdentityAllocator());
        var table = ServiceTable.Compile(ServiceLoader.Parse(Services, "services.yaml"), endpoints);
        _pair.PipelineA!.Services = new ServiceLoadBalancer(table);
        _pair.PipelineB!.Services = new ServiceLoadBalancer(table);
    }

    public void Dispose() => _pair.Dispose();

    private static byte[] Tcp(IpAddress src, ushort sport, IpAddress dst, ushort dport, byte flags)
    {
        var p = new byte[40 + 10];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
        p[8] = 64;
        p[9] = IpProtocol.Tcp;
        src.WriteBytes(p.AsSpan(12));
        dst.WriteBytes(p.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(20), sport);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), dport);
        p[32] = 0x50;
        p[33] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), InternetChecksum.Compute(p.AsSpan(0, 20)));
        TransportChecksum.TryFill(p);
        return p;
    }

    /// <summary>Node X sends a workload packet; node Y receives it. Returns the delivered IP packet, or null.</summary>
    private static byte[]? Carry(OverlayPipeline from, OverlayPipeline to, IpEndpoint fromUnderlay, byte[] packet, out OverlayResult sent) =>
        Carry(from, to, fromUnderlay, packet, out sent, out _);

    private static byte[]? Carry(OverlayPipeline from, OverlayPipeline to, IpEndpoint fromUnderlay, byte[] packet, out OverlayResult sent, out OverlayResult received)
    {
        received = default;
        var buffer = new byte[OverlayPipeline.Headroom + packet.Length + 64];
        packet.CopyTo(buffer, OverlayPipeline.Headroom);
        sent = from.Outbound(buffer, OverlayPipeline.Headroom, packet.Length);
        if (sent.Action != OverlayAction.Send)
        {
            return sent.Action == OverlayAction.Deliver ? buffer.AsSpan(sent.Offset, sent.Length).ToArray() : null;
        }
        var datagram = buffer.AsSpan(sent.Offset, sent.Length).ToArray();
        received = to.Inbound(fromUnderlay, datagram, datagram.Length);
        return received.Action == OverlayAction.Deliver ? datagram.AsSpan(received.Offset, received.Length).ToArray() : null;
    }

    [Fact]
    public void ClientTalksToTheVipAndOnlyEverSeesTheVip()
    {
        var client = IpAddress.Parse("10.11.1.10");   // frontend-0 on node A
        var delivered = Carry(_pair.PipelineA!, _pair.PipelineB!, ReplayPair.UnderlayA, Tcp(client, 40000, Vip, 80, TcpFlag.Syn), out var sent);
        Assert.Equal(OverlayAction.Send, sent.Action);
        Assert.NotNull(delivered);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(delivered, out var atBackend));
        Assert.Contains(atBackend.Destination, new[] { IpAddress.Parse("10.11.2.10"), IpAddress.Parse("10.11.2.11") });
        Assert.Equal(80, atBackend.DestinationPort);
        Assert.True(TransportChecksum.Verify(delivered));

        // The backend answers; node A turns the source back into the VIP.
        var reply = Carry(_pair.PipelineB!, _pair.PipelineA!, ReplayPair.UnderlayB,
            Tcp(atBackend.Destination, 80, client, 40000, TcpFlag.Syn | TcpFlag.Ack), out _);
        Assert.NotNull(reply);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(reply, out var atClient));
        Assert.Equal(Vip, atClient.Source);
        Assert.Equal(80, atClient.SourcePort);
        Assert.True(TransportChecksum.Verify(reply));
        Assert.Equal(BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(10)), InternetChecksum.Compute(
            [.. reply.AsSpan(0, 10), 0, 0, .. reply.AsSpan(12, 8)]));

        // Later packets of the flow keep their backend.
        for (int i = 0; i < 5; i++)
        {
            var again = Carry(_pair.PipelineA!, _pair.PipelineB!, ReplayPair.UnderlayA, Tcp(client, 40000, Vip, 80, TcpFlag.Ack), out _);
            FlowParser.ParseIp(again, out var k);
            Assert.Equal(atBackend.Destination, k.Destination);
        }
    }

    [Fact]
    public void PolicyJudgesTheBackendThroughTheVip()
    {
        var intruder = IpAddress.Parse("10.11.1.20");
        // intruder has no egress policy; backend's ingress policy (frontend only) denies it at node B.
        var delivered = Carry(_pair.PipelineA!, _pair.PipelineB!, ReplayPair.UnderlayA, Tcp(intruder, 40000, Vip, 80, TcpFlag.Syn), out var sent, out var received);
        Assert.Equal(OverlayAction.Send, sent.Action);
        Assert.Null(delivered);
        Assert.Equal(OverlayAction.Drop, received.Action);
        Assert.Equal(OverlayDrop.PolicyDenied, received.Drop);
    }

    [Fact]
    public void VipWithoutBackendsAnswersPortUnreachableAndLogsNoService()
    {
        var client = IpAddress.Parse("10.11.1.10");
        var packet = Tcp(client, 40001, EmptyVip, 80, TcpFlag.Syn);
        var icmp = Carry(_pair.PipelineA!, _pair.PipelineB!, ReplayPair.UnderlayA, packet, out var sent);
        Assert.Equal(OverlayAction.Deliver, sent.Action);
        Assert.Equal(OverlayDrop.NoService, sent.Drop);
        Assert.Equal(1, _pair.PipelineA!.Drops(Direction.Egress, OverlayDrop.NoService));
        Assert.NotNull(icmp);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(icmp, out var k));
        Assert.Equal(EmptyVip, k.Source);
        Assert.Equal(client, k.Destination);
        Assert.Equal(IpProtocol.Icmp, k.Protocol);
        Assert.Equal((3, 3), (k.IcmpType, k.IcmpCode));
        Assert.True(TransportChecksum.Verify(icmp));
        Assert.Equal(0xFFFF, InternetChecksum.Fold(InternetChecksum.Add(0, icmp.AsSpan(0, 20))));   // IPv4 header checksum verifies
        // The quote is the original packet's header and first 8 bytes of TCP.
        Assert.Equal(packet.AsSpan(0, 28).ToArray(), icmp.AsSpan(28, 28).ToArray());
        var events = new List<FlowEvent>();
        while (_pair.PipelineA.Policy.Events.TryRead(out var ev))
        {
            events.Add(ev);
        }
        Assert.Contains(events, e => e.DropReason == DropReason.NoService && e.Key.Destination == EmptyVip);
    }
}
