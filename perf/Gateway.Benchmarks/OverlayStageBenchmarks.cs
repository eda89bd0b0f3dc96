using BenchmarkDotNet.Attributes;
using Gateway.Datapath;
using Gateway.Node.Overlay;
using Gateway.Node.Replay;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Benchmarks;

/// <summary>
/// The overlay send path's per-packet work around the AEAD, stage by stage, on the replay
/// fixture's established TCP flow (1,420-byte packets, conntrack hit): what `gateway replay`
/// samples as parse_policy and vxlan, without the ~50 ns of timestamps around each sample, and the
/// whole in-order half of <see cref="OverlayPipeline.BeginOutbound(Span{byte}, int, int, long, out SealTicket)"/>
/// (everything but the seal: parse, services, routing, policy, VXLAN, session and counter) at one
/// clock reading, as the send path hands it one per batch.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class OverlayStageBenchmarks
{
    private const int Batch = 512;
    private ReplayPair _pair = null!;
    private OverlayPipeline _sender = null!;
    private OverlayPeer _peer = null!;
    private byte[] _packet = null!;
    private byte[] _work = null!;
    private readonly byte[] _mac = new byte[6];
    private FlowKey _key;
    private long _now;
    private OverlayPipeline _receiver = null!;
    private byte[] _frame = null!;
    private byte[] _inbound = null!;
    private int _frameLength;
    private PublicKey _senderKey;

    [GlobalSetup]
    public void Setup()
    {
        string root = RepositoryRoot();
        var capture = ReplayCapture.Load(Path.Combine(root, "fixtures/replay/tcp-1420.pcap"));
        var policy = ReplayPolicy.Load(Path.Combine(root, "fixtures/replay/endpoints.yaml"), Path.Combine(root, "fixtures/replay/policy.yaml"));
        _pair = new ReplayPair(ReplayMode.Overlay, capture, policy, TimeProvider.System);
        _pair.Handshake();
        int index = Enumerable.Range(0, capture.Count).First(i => capture.FromA[i] && capture.Lengths[i] == 1420);
        _packet = capture.Packet(index).ToArray();
        _sender = _pair.PipelineA!;
        _peer = _sender.Peers.First();
        _work = GC.AllocateUninitializedArray<byte>(OverlayPipeline.Headroom + _packet.Length + 64, pinned: true);
        VxlanFrame.NodeMac(_sender.Options.TunnelAddress, _mac);
        // The flow's first packets through the whole pipeline: conntrack holds it from here on.
        foreach (int i in Enumerable.Range(0, capture.Count).Where(i => capture.FromA[i]).Take(8))
        {
            capture.Packet(i).CopyTo(_work.AsSpan(OverlayPipeline.Headroom));
            _sender.Outbound(_work, OverlayPipeline.Headroom, capture.Lengths[i]);
        }
        _packet.CopyTo(_work.AsSpan(OverlayPipeline.Headroom));
        FlowParser.ParseIp(_packet, out _key);
        _now = _pair.EngineA.ReadClock();

        // The receiving side: the VXLAN datagram node A frames for this packet, as node B's engine
        // hands it over once opened (its inner IPv4 header parsed: the source is known).
        _receiver = _pair.PipelineB!;
        _packet.CopyTo(_work.AsSpan(OverlayPipeline.Headroom));
        var framed = _sender.FrameOutbound(_work, OverlayPipeline.Headroom, _packet.Length, _now, out _);
        _frame = _work.AsSpan(framed.Offset, framed.Length).ToArray();
        _frameLength = framed.Length;
        _inbound = GC.AllocateUninitializedArray<byte>(_frame.Length + 64, pinned: true);
        _senderKey = _receiver.Peers.First().PublicKey;
        _packet.CopyTo(_work.AsSpan(OverlayPipeline.Headroom));
    }

    [GlobalCleanup]
    public void Cleanup() => _pair.Dispose();

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Gateway.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("run from inside the repository");
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "parse + conntrack hit (egress policy)")]
    public int ParsePolicy() => ParseAndDecide(_work.AsSpan(OverlayPipeline.Headroom, _packet.Length), _sender.Policy, PolicyChecks.Egress, 0);

    private int ParseAndDecide(ReadOnlySpan<byte> packet, PolicyEngine policy, PolicyChecks checks, uint sourceIdentity)
    {
        int allowed = 0;
        for (int i = 0; i < Batch; i++)
        {
            FlowParser.ParseIp(packet, out var key, out _);
            allowed += policy.Process(key, _now, checks, sourceIdentity).Allowed ? 1 : 0;
        }
        return allowed;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "VXLAN + outer IPv4/UDP header write")]
    public void VxlanWrite()
    {
        var header = _work.AsSpan(OverlayPipeline.Headroom - VxlanFrame.Overhead, VxlanFrame.Overhead);
        var options = _sender.Options;
        for (int i = 0; i < Batch; i++)
        {
            VxlanFrame.Write(header, _packet.Length, options.TunnelAddress, _peer.TunnelAddress, options.VxlanPort, 256,
                VxlanFrame.SourcePort(_key), _peer.Mac, _mac, 0x0800);
        }
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "AcceptInbound: VXLAN, sender binding, ingress policy")]
    public int AcceptInbound()
    {
        int delivered = 0;
        var source = ReplayPair.TunnelA;
        for (int i = 0; i < Batch; i++)
        {
            // Delivering writes nothing into the frame (no service NAT on this flow): one copy serves all.
            var r = _receiver.AcceptInbound(_frame, 0, _frameLength, _senderKey, TunnelEvent.TransportDelivered, _now, source);
            delivered += r.Action == OverlayAction.Deliver ? 1 : 0;
        }
        return delivered;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "inner parse + conntrack hit (ingress policy)")]
    public int InboundParsePolicy() => ParseAndDecide(_frame.AsSpan(VxlanFrame.Overhead, _packet.Length), _receiver.Policy, PolicyChecks.Ingress, 256);

    [Benchmark(OperationsPerInvoke = Batch, Description = "BeginOutbound, all but the AEAD")]
    public int BeginOutbound()
    {
        int sent = 0;
        for (int i = 0; i < Batch; i++)
        {
            // The pipeline writes only in front of the packet until the seal, which is not run here.
            var r = _sender.BeginOutbound(_work, OverlayPipeline.Headroom, _packet.Length, _now, out _);
            sent += r.Action == OverlayAction.Send ? 1 : 0;
        }
        return sent;
    }
}
