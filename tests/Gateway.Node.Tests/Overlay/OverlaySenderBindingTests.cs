using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Node.Overlay;
using Gateway.Node.Replay;
using Gateway.Node.Tests.Replay;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Tests.Overlay;

/// <summary>
/// The VNI is bound to the node that sent it. Node A is authenticated (it holds a session with B)
/// but forges: it writes VXLAN frames by hand with any VNI and any inner source and seals them
/// with its own WireGuard session. Node B must accept a frame only when the inner source is one of
/// A's workloads and the VNI is the identity B's ipcache holds for it.
/// </summary>
public sealed class OverlaySenderBindingTests : IDisposable
{
    private readonly ReplayPair _pair;
    private readonly ReplayPolicy _policy;

    public OverlaySenderBindingTests()
    {
        string dir = ReplayFixtureTests.FixtureDirectory;
        var capture = ReplayCapture.Load(Path.Combine(dir, ReplayFixtureGenerator.Imix));
        _policy = ReplayPolicy.Load(Path.Combine(dir, "endpoints.yaml"), Path.Combine(dir, "policy.yaml"));
        _pair = new ReplayPair(ReplayMode.Overlay, capture, _policy, TimeProvider.System);
        _pair.Handshake();
        // B's view of A: A's workloads live in 10.11.1.0/24 (some addresses there have no endpoint).
        _pair.PipelineB!.SetPeers([new OverlayPeer(_pair.PublicA, ReplayPair.TunnelA, [IpPrefix.Parse("10.11.1.0/24")])]);
    }

    public void Dispose() => _pair.Dispose();

    private uint Id(string pod) => _policy.Endpoints.FindByName(pod)!.Identity.Id;

    private static readonly IpAddress Backend = IpAddress.Parse("10.11.2.10");

    /// <summary>An ICMP echo request from <paramref name="source"/> to <paramref name="destination"/>.</summary>
    private static byte[] Echo(IpAddress source, IpAddress destination)
    {
        var packet = new byte[28 + 16];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = IpProtocol.Icmp;
        source.WriteBytes(packet.AsSpan(12));
        destination.WriteBytes(packet.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), InternetChecksum.Compute(packet.AsSpan(0, 20)));
        packet[20] = 8;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(24), 0x4242);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(26), 1);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), InternetChecksum.Compute(packet.AsSpan(20)));
        return packet;
    }

    /// <summary>What a forging node does: VXLAN with a VNI of its choice, sealed by its own
    /// (authentic) WireGuard session to B. Returns B's verdict.</summary>
    private OverlayResult Forge(IpAddress innerSource, uint vni, IpAddress? innerDestination = null)
    {
        var (received, length) = Seal(innerSource, vni, innerDestination);
        return _pair.PipelineB!.Inbound(ReplayPair.UnderlayA, received, length);
    }

    /// <summary>The forged frame sealed by A, in a buffer with room to spare.</summary>
    private (byte[] Buffer, int Length) Seal(IpAddress innerSource, uint vni, IpAddress? innerDestination = null)
    {
        var inner = Echo(innerSource, innerDestination ?? Backend);
        int offset = OverlayPipeline.Headroom;
        var buffer = new byte[offset + inner.Length + 64];
        inner.CopyTo(buffer, offset);
        Span<byte> macB = stackalloc byte[6], macA = stackalloc byte[6];
        VxlanFrame.NodeMac(ReplayPair.TunnelB, macB);
        VxlanFrame.NodeMac(ReplayPair.TunnelA, macA);
        VxlanFrame.Write(buffer.AsSpan(offset - VxlanFrame.Overhead, VxlanFrame.Overhead), inner.Length,
            ReplayPair.TunnelA, ReplayPair.TunnelB, 8472, vni, 40000, macB, macA, 0x0800);
        var sealedResult = _pair.EngineA.EncapsulateInPlace(buffer.AsSpan(offset - OverlayPipeline.Headroom), VxlanFrame.Overhead + inner.Length);
        Assert.Equal(TunnelAction.SendToNetwork, sealedResult.Action);
        var datagram = buffer.AsSpan(sealedResult.Offset, sealedResult.Length).ToArray();
        var received = new byte[datagram.Length + 128];
        datagram.CopyTo(received, 0);
        return (received, datagram.Length);
    }

    private List<FlowEvent> EventsOfB()
    {
        var events = new List<FlowEvent>();
        while (_pair.PipelineB!.Policy.Events.TryRead(out var e))
        {
            events.Add(e);
        }
        return events;
    }

    [Fact]
    public void An_honest_frame_from_a_workload_of_the_sender_with_its_own_identity_is_delivered()
    {
        var result = Forge(IpAddress.Parse("10.11.1.10"), Id("frontend-0"));
        Assert.Equal(OverlayAction.Deliver, result.Action);
    }

    [Fact]
    public void A_vni_that_is_not_the_sources_identity_is_dropped_as_invalid_identity_with_a_flow_event()
    {
        EventsOfB();
        // intruder (10.11.1.20) claims frontend's identity, which backend's ingress policy admits.
        var result = Forge(IpAddress.Parse("10.11.1.20"), Id("frontend-0"));
        Assert.Equal(OverlayAction.Drop, result.Action);
        Assert.Equal(OverlayDrop.InvalidIdentity, result.Drop);
        Assert.Equal(1, _pair.PipelineB!.Drops(Direction.Ingress, OverlayDrop.InvalidIdentity));
        var ev = Assert.Single(EventsOfB());
        Assert.Equal(FlowVerdict.Dropped, ev.Verdict);
        Assert.Equal(DropReason.InvalidIdentity, ev.DropReason);
        Assert.Equal("INVALID_IDENTITY", FlowEvent.DropReasonName(ev.DropReason));
        Assert.Equal(Direction.Ingress, ev.TrafficDirection);
        Assert.Equal(Id("frontend-0"), ev.SourceIdentity); // the claimed identity, for the operator
        Assert.Equal(IpAddress.Parse("10.11.1.20"), ev.Key.Source);
    }

    [Theory]
    [InlineData(ReservedIdentity.Host)]
    [InlineData(ReservedIdentity.RemoteNode)]
    [InlineData(ReservedIdentity.Health)]
    [InlineData(ReservedIdentity.KubeApiServer)]
    public void A_workload_of_the_sender_cannot_claim_a_reserved_identity(uint reserved)
    {
        var result = Forge(IpAddress.Parse("10.11.1.10"), reserved);
        Assert.Equal(OverlayDrop.InvalidIdentity, result.Drop);
    }

    [Theory]
    [InlineData("10.11.2.11", "backend-1")] // a workload of the receiving node itself
    [InlineData("10.11.2.20", "db")]
    [InlineData("10.99.0.1", null)]          // outside every pod CIDR
    [InlineData("198.51.100.2", null)]       // the receiver's own tunnel address
    public void An_inner_source_outside_the_senders_pod_cidrs_is_dropped_as_invalid_source_ip(string source, string? pod)
    {
        EventsOfB();
        uint vni = pod is null ? ReservedIdentity.World : Id(pod);
        var result = Forge(IpAddress.Parse(source), vni);
        Assert.Equal(OverlayAction.Drop, result.Action);
        Assert.Equal(OverlayDrop.InvalidSourceIp, result.Drop);
        var ev = Assert.Single(EventsOfB());
        Assert.Equal(DropReason.InvalidSourceIp, ev.DropReason);
        Assert.Equal(vni, ev.SourceIdentity);
    }

    [Fact]
    public void A_source_in_the_senders_pod_cidr_without_an_endpoint_may_only_be_world()
    {
        var unknown = IpAddress.Parse("10.11.1.99");
        Assert.Equal(OverlayDrop.InvalidIdentity, Forge(unknown, Id("frontend-0")).Drop);
        // As world it passes the sender check and meets backend's ingress policy, which admits only frontend.
        var asWorld = Forge(unknown, ReservedIdentity.World);
        Assert.Equal(OverlayDrop.PolicyDenied, asWorld.Drop);
    }

    [Fact]
    public void The_sender_nodes_own_tunnel_address_may_claim_remote_node_and_nothing_else()
    {
        // remote-node passes the sender check; backend's policy does not admit it (a policy drop, not a forgery).
        Assert.Equal(OverlayDrop.PolicyDenied, Forge(ReplayPair.TunnelA, ReservedIdentity.RemoteNode).Drop);
        Assert.Equal(OverlayDrop.InvalidIdentity, Forge(ReplayPair.TunnelA, ReservedIdentity.Host).Drop);
        Assert.Equal(OverlayDrop.InvalidIdentity, Forge(ReplayPair.TunnelA, Id("frontend-0")).Drop);
        Assert.Equal(OverlayDrop.InvalidIdentity, Forge(ReplayPair.TunnelA, ReservedIdentity.World).Drop);
    }

    [Fact]
    public void Checking_and_refusing_forged_frames_allocates_nothing()
    {
        var frames = new List<(byte[] Buffer, int Length)>();
        for (int i = 0; i < 300; i++)
        {
            frames.Add((i % 3) switch
            {
                0 => Seal(IpAddress.Parse("10.11.1.20"), Id("frontend-0")),     // forged identity
                1 => Seal(IpAddress.Parse("10.11.2.11"), Id("backend-1")),      // forged source
                _ => Seal(IpAddress.Parse("10.11.1.10"), Id("frontend-0")),     // honest
            });
        }
        var pipeline = _pair.PipelineB!;
        for (int i = 0; i < 150; i++)
        {
            pipeline.Inbound(ReplayPair.UnderlayA, frames[i].Buffer, frames[i].Length);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 150; i < 300; i++)
        {
            pipeline.Inbound(ReplayPair.UnderlayA, frames[i].Buffer, frames[i].Length);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(100, pipeline.Drops(Direction.Ingress, OverlayDrop.InvalidIdentity));
        Assert.Equal(100, pipeline.Drops(Direction.Ingress, OverlayDrop.InvalidSourceIp));
    }

    [Fact]
    public void Every_combination_of_source_and_vni_passes_only_when_the_source_is_the_senders_and_the_vni_its_identity()
    {
        var sources = _policy.Endpoints.All.SelectMany(e => e.Ips.Select(ip => (Ip: ip, Id: e.Identity.Id)))
            .Append((Ip: IpAddress.Parse("10.11.1.77"), Id: ReservedIdentity.World))
            .Append((Ip: IpAddress.Parse("172.16.0.1"), Id: ReservedIdentity.World))
            .ToList();
        var vnis = sources.Select(s => s.Id).Concat([ReservedIdentity.Host, ReservedIdentity.World, ReservedIdentity.RemoteNode]).Distinct().ToList();
        var podsOfA = IpPrefix.Parse("10.11.1.0/24");
        int accepted = 0;
        foreach (var (ip, id) in sources)
        {
            foreach (uint vni in vnis)
            {
                // To a destination with no policy of its own concern: any drop that is not a
                // forgery reason means the frame passed the sender check.
                var result = Forge(ip, vni);
                bool passed = result.Action == OverlayAction.Deliver ||
                              result.Drop is not (OverlayDrop.InvalidIdentity or OverlayDrop.InvalidSourceIp);
                bool legitimate = podsOfA.Contains(ip) && vni == id;
                Assert.True(passed == legitimate, $"{ip} with VNI {vni}: {result}");
                accepted += passed ? 1 : 0;
            }
        }
        Assert.True(accepted >= 6, $"only {accepted} legitimate combinations were tried");
    }
}
