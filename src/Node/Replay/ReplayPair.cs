using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Node.Overlay;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Replay;

/// <summary>How packets cross between the two simulated nodes.</summary>
public enum ReplayMode : byte
{
    /// <summary>WireGuard alone: engine A seals, engine B opens (and the reverse).</summary>
    Plain,
    /// <summary>The daemon's <see cref="OverlayPipeline"/>: policy, VXLAN with the identity as VNI, WireGuard.</summary>
    Overlay,
}

/// <summary>Receives every underlay datagram the pair exchanges (handshake messages included).</summary>
public interface IUnderlaySink
{
    void Datagram(bool fromA, ReadOnlySpan<byte> datagram);
}

/// <summary>
/// Two nodes wired back to back in memory: two <see cref="WireGuardEngine"/>s (and in overlay mode
/// two <see cref="OverlayPipeline"/>s built as the daemon builds them) whose handshake is completed
/// by handing each engine's output to the other. No TUN, no socket: the "network" is this object.
/// </summary>
public sealed class ReplayPair : IDisposable
{
    /// <summary>Made-up underlay endpoints (RFC 5737 documentation range); they only ever appear in a written file.</summary>
    public static readonly IpEndpoint UnderlayA = new(IpAddress.Parse("192.0.2.1"), 51871);
    public static readonly IpEndpoint UnderlayB = new(IpAddress.Parse("192.0.2.2"), 51871);
    /// <summary>The nodes' VXLAN tunnel addresses (also documentation range, never routed).</summary>
    public static readonly IpAddress TunnelA = IpAddress.Parse("198.51.100.1");
    public static readonly IpAddress TunnelB = IpAddress.Parse("198.51.100.2");

    /// <summary>Queues what an engine emits outside the data path (handshake messages, keepalives).
    /// It is touched only at handshakes, so the copy it makes is not a per-packet allocation.</summary>
    private sealed class HandshakeOutbox : ITunnelOutput
    {
        public readonly Queue<byte[]> Pending = new();
        public int Count;
        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram)
        {
            Pending.Enqueue(datagram.ToArray());
            Count = Pending.Count;
        }
    }

    private readonly HandshakeOutbox _outA = new(), _outB = new();
    private readonly EphemeralKeyRecorder _random = new();
    private readonly List<(bool NodeA, byte[] Key)> _ephemerals = [];
    private readonly byte[] _privateA = GC.AllocateArray<byte>(32, pinned: true);
    private readonly byte[] _privateB = GC.AllocateArray<byte>(32, pinned: true);
    private readonly byte[] _scratch = new byte[1 << 16];

    public ReplayPair(ReplayMode mode, ReplayCapture capture, ReplayPolicy? policy, TimeProvider clock, IUnderlaySink? sink = null)
    {
        ArgumentNullException.ThrowIfNull(capture);
        ArgumentNullException.ThrowIfNull(clock);
        if (mode == ReplayMode.Overlay && policy is null)
        {
            throw new ArgumentException("Overlay mode needs endpoints (and optionally a policy).", nameof(policy));
        }
        Mode = mode;
        Sink = sink;
        Clock = clock;
        X25519.GeneratePrivateKey(_privateA);
        X25519.GeneratePrivateKey(_privateB);
        EngineA = new WireGuardEngine(_outA, new WireGuardEngineOptions { Clock = clock, Random = _random });
        EngineB = new WireGuardEngine(_outB, new WireGuardEngineOptions { Clock = clock, Random = _random });
        EngineA.SetPrivateKey(_privateA);
        EngineB.SetPrivateKey(_privateB);
        EngineA.ListenPort = UnderlayA.Port;
        EngineB.ListenPort = UnderlayB.Port;
        PublicA = EngineA.LocalPublicKey!.Value;
        PublicB = EngineB.LocalPublicKey!.Value;
        PeerBOnA = EngineA.GetOrAddPeer(PublicB);
        PeerAOnB = EngineB.GetOrAddPeer(PublicA);
        EngineA.SetEndpoint(PeerBOnA, UnderlayB);
        EngineB.SetEndpoint(PeerAOnB, UnderlayA);

        var podsA = ReplayCapture.HostPrefixes(capture.SideA);
        var podsB = ReplayCapture.HostPrefixes(capture.SideB);
        if (mode == ReplayMode.Plain)
        {
            foreach (var prefix in podsB) EngineA.AddAllowedIp(PeerBOnA, prefix);
            foreach (var prefix in podsA) EngineB.AddAllowedIp(PeerAOnB, prefix);
        }
        else
        {
            // As the daemon configures an overlay peer: its tunnel address is its allowed IP (the
            // VXLAN datagram's outer source), its pods are routed by the pipeline.
            EngineA.AddAllowedIp(PeerBOnA, new IpPrefix(TunnelB, 32));
            EngineB.AddAllowedIp(PeerAOnB, new IpPrefix(TunnelA, 32));
            var cluster = podsA.Concat(podsB).ToArray();
            PipelineA = new OverlayPipeline(EngineA, policy!.CreateEngine(clock),
                new OverlayOptions { TunnelAddress = TunnelA, PodCidrs = podsA, ClusterCidrs = cluster }, clock);
            PipelineB = new OverlayPipeline(EngineB, policy.CreateEngine(clock),
                new OverlayOptions { TunnelAddress = TunnelB, PodCidrs = podsB, ClusterCidrs = cluster }, clock);
            PipelineA.SetPeers([new OverlayPeer(PublicB, TunnelB, podsB)]);
            PipelineB.SetPeers([new OverlayPeer(PublicA, TunnelA, podsA)]);
        }
    }

    public ReplayMode Mode { get; }
    public TimeProvider Clock { get; }
    public IUnderlaySink? Sink { get; set; }
    public WireGuardEngine EngineA { get; }
    public WireGuardEngine EngineB { get; }
    public PublicKey PublicA { get; }
    public PublicKey PublicB { get; }
    public Peer PeerBOnA { get; }
    public Peer PeerAOnB { get; }
    public OverlayPipeline? PipelineA { get; }
    public OverlayPipeline? PipelineB { get; }
    /// <summary>Handshake-layer datagrams exchanged (initiations, responses, keepalives, cookies).</summary>
    public long ControlDatagrams { get; private set; }

    /// <summary>The static private keys (for the key log). Secret: never printed.</summary>
    internal ReadOnlySpan<byte> PrivateA => _privateA;
    internal ReadOnlySpan<byte> PrivateB => _privateB;

    /// <summary>Runs the handshake A to B to completion (initiation, response, confirming keepalive).</summary>
    public void Handshake()
    {
        EngineA.InitiateHandshake(PeerBOnA);
        Pump();
        if (!PeerBOnA.HasSession || !PeerAOnB.HasSession)
        {
            throw new InvalidOperationException("The in-memory handshake did not complete.");
        }
    }

    /// <summary>True when an engine queued something outside the data path (cheap check for the hot loop).</summary>
    public bool HasPending => (_outA.Count | _outB.Count) != 0;

    /// <summary>Delivers queued handshake-layer datagrams to the other side until both are quiet.</summary>
    public void Pump()
    {
        for (int round = 0; round < 32 && HasPending; round++)
        {
            DrainTo(_outA, fromA: true);
            DrainTo(_outB, fromA: false);
        }
    }

    private void DrainTo(HandshakeOutbox outbox, bool fromA)
    {
        while (outbox.Pending.TryDequeue(out var datagram))
        {
            outbox.Count = outbox.Pending.Count;
            ControlDatagrams++;
            RememberEphemeral(fromA, datagram);
            Sink?.Datagram(fromA, datagram);
            datagram.CopyTo(_scratch, 0);
            var from = fromA ? UnderlayA : UnderlayB;
            if (Mode == ReplayMode.Overlay)
            {
                (fromA ? PipelineB! : PipelineA!).Inbound(from, _scratch, datagram.Length);
            }
            else
            {
                (fromA ? EngineB : EngineA).Decapsulate(from, _scratch.AsSpan(0, datagram.Length));
            }
        }
    }

    /// <summary>Ephemeral private keys recognised for this pair's handshakes (see <see cref="EphemeralKeyRecorder"/>).</summary>
    internal IReadOnlyList<(bool NodeA, byte[] Key)> EphemeralKeys => _ephemerals;

    private void RememberEphemeral(bool fromA, byte[] datagram)
    {
        // Initiation: ephemeral public at [8, 40); response: at [12, 44).
        int at = datagram.Length == Messages.InitiationSize && datagram[0] == 1 ? 8
            : datagram.Length == Messages.ResponseSize && datagram[0] == 2 ? 12 : -1;
        if (at >= 0 && _random.FindPrivate(datagram.AsSpan(at, 32)) is { } key)
        {
            _ephemerals.Add((fromA, key));
        }
    }

    public void Dispose()
    {
        foreach (var (_, key) in _ephemerals) System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
        _random.Dispose();
        EngineA.Dispose();
        EngineB.Dispose();
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(_privateA);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(_privateB);
    }
}

/// <summary>Endpoints and policies loaded once; each simulated node gets its own engine (own
/// conntrack) over one shared identity allocator, as nodes of one cluster agree on identities.</summary>
public sealed class ReplayPolicy
{
    private readonly PolicySet _policies;
    private readonly EndpointTable _endpoints;

    private ReplayPolicy(IdentityAllocator identities, PolicySet policies, EndpointTable endpoints)
    {
        Identities = identities;
        _policies = policies;
        _endpoints = endpoints;
    }

    public IdentityAllocator Identities { get; }

    public EndpointTable Endpoints => _endpoints;

    /// <summary>Loads the files; a file that does not load throws <see cref="ReplayInputException"/>.</summary>
    public static ReplayPolicy Load(string endpointsPath, string? policyPath)
    {
        ArgumentNullException.ThrowIfNull(endpointsPath);
        var identities = new IdentityAllocator();
        try
        {
            var endpoints = EndpointFile.Load(endpointsPath, identities);
            var policies = policyPath is null ? PolicySet.Empty : PolicyLoader.Load(policyPath);
            return new ReplayPolicy(identities, policies, endpoints);
        }
        catch (Exception e) when (e is PolicyLoadException or IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new ReplayInputException(e.Message, e);
        }
    }

    public PolicyEngine CreateEngine(TimeProvider clock)
    {
        var engine = new PolicyEngine(Identities, new Conntrack(1 << 16), new FlowEventRing(1 << 13), clock);
        engine.Apply(_policies, _endpoints);
        return engine;
    }
}
