using System.Buffers.Binary;
using System.Diagnostics;
using Gateway.Datapath;
using Gateway.LoadBalancer;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Overlay;

/// <summary>What the caller does with the outcome of one overlay step.</summary>
public enum OverlayAction : byte
{
    /// <summary>Nothing (a handshake was handled, a packet staged until one completes).</summary>
    None,
    /// <summary>Send bytes [Offset, Offset+Length) of the buffer to <see cref="OverlayResult.Endpoint"/>.</summary>
    Send,
    /// <summary>Write bytes [Offset, Offset+Length) of the buffer (an IP packet) to TUN.</summary>
    Deliver,
    /// <summary>Dropped; <see cref="OverlayResult.Drop"/> (and for the tunnel layer
    /// <see cref="OverlayResult.TunnelReason"/>) says why.</summary>
    Drop,
}

/// <summary>The outcome of <see cref="OverlayPipeline.Outbound"/> or <see cref="OverlayPipeline.Inbound"/>. No allocation.</summary>
public readonly record struct OverlayResult(OverlayAction Action, int Offset, int Length, IpEndpoint Endpoint, OverlayDrop Drop, TunnelEvent TunnelReason)
{
    internal static OverlayResult Dropped(OverlayDrop reason) => new(OverlayAction.Drop, 0, 0, default, reason, TunnelEvent.None);

    /// <summary>The same result for a tunnel call made on buffer[start..]: offsets become relative to buffer.</summary>
    internal OverlayResult At(int start) => Action is OverlayAction.Send or OverlayAction.Deliver ? this with { Offset = Offset + start } : this;

    internal static OverlayResult FromTunnel(in TunnelResult r) => r.Action switch
    {
        TunnelAction.SendToNetwork => new(OverlayAction.Send, r.Offset, r.Length, r.Endpoint, OverlayDrop.None, r.Reason),
        TunnelAction.DeliverToTun => new(OverlayAction.Deliver, r.Offset, r.Length, default, OverlayDrop.None, r.Reason),
        TunnelAction.Drop => new(OverlayAction.Drop, 0, 0, default, OverlayDrop.Tunnel, r.Reason),
        _ => new(OverlayAction.None, 0, 0, default, OverlayDrop.None, r.Reason),
    };
}

/// <summary>Static settings of an overlay node.</summary>
public sealed class OverlayOptions
{
    public required IpAddress TunnelAddress { get; init; }
    public IReadOnlyList<IpPrefix> PodCidrs { get; init; } = [];
    public IReadOnlyList<IpPrefix> ClusterCidrs { get; init; } = [];
    public ushort VxlanPort { get; init; } = 8472;
    public bool Strict { get; init; } = true;
}

/// <summary>A remote node: its WireGuard peer, VXLAN endpoint and the workload prefixes behind it.</summary>
public sealed class OverlayPeer(PublicKey publicKey, IpAddress tunnelAddress, IReadOnlyList<IpPrefix> podCidrs)
{
    private readonly byte[] _mac = new byte[6];
    private int _macLearned;
    private Peer? _enginePeer; // the engine's peer for PublicKey, cached: routing happens once per packet

    public PublicKey PublicKey { get; } = publicKey;
    public IpAddress TunnelAddress { get; } = tunnelAddress;
    public IReadOnlyList<IpPrefix> PodCidrs { get; } = podCidrs;

    /// <summary>The inner destination MAC for frames to this node: learned from its frames,
    /// else the Gateway scheme derived from its tunnel address.</summary>
    internal ReadOnlySpan<byte> Mac
    {
        get
        {
            if (Volatile.Read(ref _macLearned) == 0)
            {
                VxlanFrame.NodeMac(TunnelAddress, _mac);
            }
            return _mac;
        }
    }

    /// <summary>The engine's peer with this node's key (looked up once, again only after it was removed).</summary>
    internal Peer? EnginePeer(WireGuardEngine engine)
    {
        var cached = Volatile.Read(ref _enginePeer);
        if (cached is not null && WireGuardEngine.IsLive(cached))
        {
            return cached;
        }
        if (!engine.TryGetPeer(PublicKey, out var found))
        {
            return null;
        }
        Volatile.Write(ref _enginePeer, found);
        return found;
    }

    internal void Learn(ReadOnlySpan<byte> sourceMac)
    {
        // Unicast source MACs only; a 6-byte copy, no allocation. Nothing is written while the MAC
        // stays the same: the send path reads these fields for every packet on another core, and a
        // store per received packet would pull their cache line away from it each time.
        if ((sourceMac[0] & 1) == 0 && !sourceMac.SequenceEqual(_mac))
        {
            sourceMac.CopyTo(_mac);
        }
        if (Volatile.Read(ref _macLearned) == 0)
        {
            Volatile.Write(ref _macLearned, 1);
        }
    }
}

/// <summary>
/// Cilium's transparent encryption in user space, as a no-I/O pipeline shared by the daemon and
/// the replay benchmark. Outbound: a workload packet from TUN is parsed in place, checked by the
/// source endpoint's egress policy (conntrack first), wrapped in VXLAN whose VNI is the source's
/// security identity, addressed to the destination node's tunnel address, and sealed by
/// WireGuard in place. Inbound: a datagram is opened by WireGuard; if it is VXLAN it must come
/// from the sending peer's tunnel address, the VNI gives the source identity, and the inner
/// packet passes the destination endpoint's ingress policy before it is delivered.
/// </summary>
/// <remarks>
/// Buffers: an outbound packet needs <see cref="Headroom"/> bytes in front of it and 32 bytes
/// behind (padding and tag); inbound datagrams are opened in place, and the buffer must be large
/// enough for an ARP reply to be sealed into it. Thread-safety: as the engine's (data-path calls
/// may run in parallel); <see cref="SetPeers"/> swaps routing state atomically.
/// </remarks>
public sealed partial class OverlayPipeline
{
    /// <summary>Bytes needed in front of an outbound workload packet.</summary>
    public const int Headroom = Messages.TransportHeaderSize + VxlanFrame.Overhead;

    private sealed class Routing
    {
        public readonly LpmTable<OverlayPeer> ByPod = new();
        // By the IPv4 tunnel address's value: the outer source of a VXLAN datagram is IPv4, and a
        // uint key hashes and compares in one instruction each.
        public readonly Dictionary<uint, OverlayPeer> ByTunnel = [];
        public readonly Dictionary<PublicKey, OverlayPeer> ByKey = [];
    }

    private readonly WireGuardEngine _engine;
    private readonly PolicyEngine _policy;
    private readonly OverlayOptions _options;
    private readonly TimeProvider _clock;
    private readonly LpmTable<bool> _local = new();
    private LpmTable<bool> _cluster = new();
    private readonly byte[] _mac = new byte[6];
    private Routing _routing = new();
    private ServiceLoadBalancer? _services;
    // [direction][reason] drop counters and per-direction forwards; Direction.Ingress = 0, Egress = 1.
    // The two directions' forward counters sit CounterStride longs apart: the send path and the
    // receive path count every packet from different cores, and two counters on one cache line
    // would move that line between the cores on every packet.
    private const int CounterStride = 16;
    private readonly long[] _drops = new long[2 * 256];
    private readonly long[] _forwards = new long[2 * CounterStride];
    private readonly long[] _allowedNew = new long[2 * CounterStride];

    public OverlayPipeline(WireGuardEngine engine, PolicyEngine policy, OverlayOptions options, TimeProvider? clock = null)
    {
        _engine = engine ?? throw new ArgumentNullException(nameof(engine));
        _policy = policy ?? throw new ArgumentNullException(nameof(policy));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        if (!options.TunnelAddress.IsV4)
        {
            throw new ArgumentException("The tunnel address must be IPv4.", nameof(options));
        }
        _clock = clock ?? TimeProvider.System;
        foreach (var prefix in options.PodCidrs)
        {
            _local.Set(prefix, true);
        }
        foreach (var prefix in options.ClusterCidrs)
        {
            _cluster.Set(prefix, true);
        }
        VxlanFrame.NodeMac(options.TunnelAddress, _mac);
    }

    public OverlayOptions Options => _options;

    public PolicyEngine Policy => _policy;

    /// <summary>Replaces the remote nodes (one reference swap: a packet sees old or new, never a mix).</summary>
    public void SetPeers(IEnumerable<OverlayPeer> peers)
    {
        var next = new Routing();
        var previous = Volatile.Read(ref _routing);
        foreach (var peer in peers)
        {
            // Keep what was learned about a node that stays.
            var kept = previous.ByKey.TryGetValue(peer.PublicKey, out var old) && old.TunnelAddress == peer.TunnelAddress &&
                       old.PodCidrs.SequenceEqual(peer.PodCidrs) ? old : peer;
            if (kept.TunnelAddress.IsV4)
            {
                next.ByTunnel[kept.TunnelAddress.V4] = kept;
            }
            next.ByKey[kept.PublicKey] = kept;
            foreach (var prefix in kept.PodCidrs)
            {
                next.ByPod.Set(prefix, kept);
            }
        }
        Volatile.Write(ref _routing, next);
    }

    /// <summary>Replaces the cluster CIDRs (a reload changed them): one reference swap.</summary>
    public void SetClusterCidrs(IEnumerable<IpPrefix> clusterCidrs)
    {
        var next = new LpmTable<bool>();
        foreach (var prefix in clusterCidrs)
        {
            next.Set(prefix, true);
        }
        Volatile.Write(ref _cluster, next);
    }

    /// <summary>True if <paramref name="address"/> lies in the cluster CIDRs in force.</summary>
    public bool InCluster(IpAddress address) => Volatile.Read(ref _cluster).TryLookup(address, out _);

    public IReadOnlyCollection<OverlayPeer> Peers => Volatile.Read(ref _routing).ByKey.Values;

    /// <summary>
    /// The service load balancer (null: no services). With one set, a workload's TCP/UDP packet to
    /// a VIP:port is translated to a backend before egress policy, and replies are translated back.
    /// </summary>
    public ServiceLoadBalancer? Services
    {
        get => Volatile.Read(ref _services);
        set => Volatile.Write(ref _services, value);
    }

    public long Drops(Direction direction, OverlayDrop reason) => Interlocked.Read(ref _drops[(int)direction * 256 + (int)reason]);

    public long Forwards(Direction direction) => Interlocked.Read(ref _forwards[(int)direction * CounterStride]);

    /// <summary>New flows the policy allowed (established flows and replies are not verdicts).</summary>
    public long PolicyAllowed(Direction direction) => Interlocked.Read(ref _allowedNew[(int)direction * CounterStride]);

    private void CountVerdict(Direction direction, in FlowDecision decision)
    {
        if (decision.Allowed && decision.Conntrack == CtResult.New)
        {
            Interlocked.Increment(ref _allowedNew[(int)direction * CounterStride]);
        }
    }

    private long NowNs => (long)(_clock.GetTimestamp() * (1_000_000_000.0 / _clock.TimestampFrequency));

    // ------------------------------------------------------------------ outbound

    /// <summary>
    /// Handles one packet read from TUN, located at buffer[<paramref name="packetOffset"/>, +length)
    /// with at least <see cref="Headroom"/> bytes in front and 32 behind.
    /// </summary>
    public OverlayResult Outbound(Span<byte> buffer, int packetOffset, int packetLength) =>
        Outbound(buffer, packetOffset, packetLength, NowNs);

    /// <summary><see cref="Outbound(Span{byte}, int, int)"/> at the time <paramref name="nowNs"/>: the
    /// engine's clock (<see cref="WireGuardEngine.ReadClock"/>, which the node's pipeline shares),
    /// read once for a batch of packets.</summary>
    public OverlayResult Outbound(Span<byte> buffer, int packetOffset, int packetLength, long nowNs)
    {
        var result = BeginOutbound(buffer, packetOffset, packetLength, nowNs, out var ticket);
        if (ticket.IsPending && !_engine.CompleteEncapsulate(ticket, buffer[result.Offset..]))
        {
            // The session's keys went between the halves (the engine counted it): not sent. Not
            // counted again here, as the daemon's worker path does not either.
            return OverlayResult.Dropped(OverlayDrop.Tunnel) with { TunnelReason = TunnelEvent.KeypairExpired };
        }
        return result;
    }

    /// <summary>
    /// <see cref="Outbound"/> split for pipelines that seal on worker threads: everything up to and
    /// including the engine's in-order half (policy, VXLAN framing, session and counter). The
    /// datagram is buffer[result.Offset, +result.Length); when <paramref name="ticket"/> is pending,
    /// the caller runs <see cref="WireGuardEngine.CompleteEncapsulate"/> on buffer[result.Offset..]
    /// (any thread) before sending it.
    /// </summary>
    public OverlayResult BeginOutbound(Span<byte> buffer, int packetOffset, int packetLength, out SealTicket ticket) =>
        BeginOutbound(buffer, packetOffset, packetLength, NowNs, out ticket);

    /// <summary><see cref="BeginOutbound(Span{byte}, int, int, out SealTicket)"/> at the time
    /// <paramref name="nowNs"/> (the engine's clock, read once for the batch): conntrack and the
    /// engine's timers share that one reading.</summary>
    public OverlayResult BeginOutbound(Span<byte> buffer, int packetOffset, int packetLength, long nowNs, out SealTicket ticket)
    {
        ticket = default;
        var framed = FrameOutbound(buffer, packetOffset, packetLength, nowNs, out var peer);
        if (framed.Action != OverlayAction.Send)
        {
            return framed;
        }
        if (peer is null)
        {
            // Not from a workload: node traffic (e.g. to a peer's tunnel address), plain WireGuard.
            var plain = _engine.BeginEncapsulateInPlace(buffer[(packetOffset - Messages.TransportHeaderSize)..], packetLength, nowNs, out ticket);
            return Sent(plain, packetOffset - Messages.TransportHeaderSize);
        }
        // The node is known from its pod CIDRs: the engine seals for its peer without routing again.
        var datagram = buffer[(framed.Offset - Messages.TransportHeaderSize)..];
        var sealedResult = peer.EnginePeer(_engine) is { } enginePeer
            ? _engine.BeginEncapsulateInPlace(enginePeer, datagram, framed.Length, nowNs, out ticket)
            : _engine.BeginEncapsulateInPlace(datagram, framed.Length, nowNs, out ticket);
        return Sent(sealedResult, framed.Offset - Messages.TransportHeaderSize);
    }

    /// <summary>
    /// The encryption-independent part of the outbound path (shared by WireGuard and IPsec mode):
    /// parse, strict-mode check, services, routing, egress policy and the VXLAN framing. A
    /// <see cref="OverlayAction.Send"/> result names the plaintext to seal, buffer[Offset, +Length):
    /// with <paramref name="peer"/> set, the VXLAN datagram to that node; with it null, node traffic
    /// (not from a workload) as it is, which the caller routes itself. Send results are not counted
    /// yet: the caller counts them once sealed (<see cref="CountOutbound"/>). Drops are counted;
    /// a Deliver (ICMP for a service without backends) goes back to TUN.
    /// </summary>
    public OverlayResult FrameOutbound(Span<byte> buffer, int packetOffset, int packetLength, out OverlayPeer? peer) =>
        FrameOutbound(buffer, packetOffset, packetLength, NowNs, out peer);

    /// <summary><see cref="FrameOutbound(Span{byte}, int, int, out OverlayPeer?)"/> at the time
    /// <paramref name="nowNs"/> (one clock reading per batch).</summary>
    public OverlayResult FrameOutbound(Span<byte> buffer, int packetOffset, int packetLength, long nowNs, out OverlayPeer? peer)
    {
        peer = null;
        if (packetOffset < Headroom || packetLength <= 0 || packetOffset + packetLength > buffer.Length)
        {
            return Count(Direction.Egress, OverlayResult.Dropped(OverlayDrop.InvalidPacket));
        }
        var packet = buffer.Slice(packetOffset, packetLength);
        if (FlowParser.ParseIp(packet, out var key, out var layout) != ParseStatus.Ok)
        {
            return Count(Direction.Egress, OverlayResult.Dropped(OverlayDrop.InvalidPacket));
        }
        if (!_local.TryLookup(key.Source, out _))
        {
            // Not from a workload: node traffic, encrypted as it is.
            return new OverlayResult(OverlayAction.Send, packetOffset, packetLength, default, OverlayDrop.None, TunnelEvent.None);
        }
        if (_options.Strict && key.Protocol == IpProtocol.Udp && key.DestinationPort == _options.VxlanPort)
        {
            // A workload must not inject encapsulated traffic of its own into the overlay.
            return Reject(key, Direction.Egress, OverlayDrop.EncapsulationProhibited);
        }
        // Services first, as Cilium's kube-proxy replacement: policy then judges the backend.
        IpAddress vip = default;
        ushort vipPort = 0;
        string? serviceName = null;
        var services = Volatile.Read(ref _services);
        if (services is not null && key.Protocol is IpProtocol.Tcp or IpProtocol.Udp)
        {
            vip = key.Destination;
            vipPort = key.DestinationPort;
            switch (TranslateOutbound(services, packet, in layout, ref key, nowNs, out serviceName))
            {
                case ServiceLookup.NotService:
                    vipPort = 0;
                    break;
                case ServiceLookup.NoBackends:
                    Reject(key, Direction.Egress, OverlayDrop.NoService, destinationService: serviceName);
                    return PortUnreachable(buffer, packetOffset, packetLength, in key, in layout);
            }
        }
        var routing = Volatile.Read(ref _routing);
        if (!routing.ByPod.TryLookup(key.Destination, out var podPeer))
        {
            if (IsLocalTarget(key.Destination))
            {
                // A workload of this node (a local backend, or its reply): OverlayPipeline.Local.cs.
                return DeliverLocal(packet, packetOffset, ref key, in layout, vip, vipPort, serviceName, nowNs);
            }
            return Reject(key, Direction.Egress, InCluster(key.Destination) ? OverlayDrop.NoTunnelEndpoint : OverlayDrop.UnknownL3TargetAddress);
        }
        var decision = Decide(key, packet, layout, PolicyChecks.Egress, nowNs, destinationService: serviceName);
        CountVerdict(Direction.Egress, decision);
        if (!decision.Allowed)
        {
            return Count(Direction.Egress, OverlayResult.Dropped(decision.DropReason == DropReason.PolicyDeny ? OverlayDrop.PolicyDeny : OverlayDrop.PolicyDenied));
        }
        if (vipPort != 0 && decision.Conntrack == CtResult.New)
        {
            // Record the reverse NAT on the flow entry policy just created: replies come from the VIP.
            _policy.Conntrack.Create(key, nowNs, vip, vipPort);
        }
        uint identity = decision.SourceIdentity;
        if (identity is 0 or > ReservedIdentity.MaxAllocated)
        {
            return Reject(key, Direction.Egress, OverlayDrop.InvalidSourceIp);
        }
        ushort etherType = key.IpVersion == 4 ? (ushort)0x0800 : (ushort)0x86DD;
        VxlanFrame.Write(buffer.Slice(packetOffset - VxlanFrame.Overhead, VxlanFrame.Overhead), packetLength,
            _options.TunnelAddress, podPeer.TunnelAddress, _options.VxlanPort, identity, VxlanFrame.SourcePort(key), podPeer.Mac, _mac, etherType);
        peer = podPeer;
        return new OverlayResult(OverlayAction.Send, packetOffset - VxlanFrame.Overhead, VxlanFrame.Overhead + packetLength, default, OverlayDrop.None, TunnelEvent.None);
    }

    /// <summary>Counts an outbound result of another encryption layer (IPsec) as this pipeline counts its own.</summary>
    public OverlayResult CountOutbound(OverlayResult result) => Count(Direction.Egress, result);

    /// <summary>Counts an inbound result of another encryption layer (IPsec) as this pipeline counts its own.</summary>
    public OverlayResult CountInbound(OverlayResult result) => Count(Direction.Ingress, result);

    /// <summary>The remote node for node traffic to <paramref name="destination"/>: the node with that
    /// tunnel address, else the node whose pod CIDRs hold it.</summary>
    public bool TryRouteNodeTraffic(IpAddress destination, out OverlayPeer peer)
    {
        var routing = Volatile.Read(ref _routing);
        return (destination.IsV4 && routing.ByTunnel.TryGetValue(destination.V4, out peer!)) || routing.ByPod.TryLookup(destination, out peer!);
    }

    /// <summary>
    /// The service step of a workload's packet: the backend of an established translation
    /// (conntrack, by the original tuple), else a new choice recorded in conntrack; the packet
    /// and <paramref name="key"/> are rewritten to the backend in place.
    /// </summary>
    private ServiceLookup TranslateOutbound(ServiceLoadBalancer services, Span<byte> packet, in PacketLayout layout, ref FlowKey key, long now, out string? serviceName)
    {
        var ct = _policy.Conntrack;
        serviceName = null;
        IpAddress backend;
        ushort backendPort;
        // The client's acknowledgment number: a RST that ends the flow when its backend goes must carry it.
        uint ack = key.Protocol == IpProtocol.Tcp && layout.TransportOffset >= 0 && layout.TransportOffset + 12 <= packet.Length
            ? BinaryPrimitives.ReadUInt32BigEndian(packet[(layout.TransportOffset + 8)..])
            : 0;
        if (ct.LookupService(key, now, out var nat, ack) == CtResult.Established)
        {
            backend = nat.BackendAddress;
            backendPort = nat.BackendPort;
        }
        else
        {
            var lookup = services.Select(in key, now, out var selection);
            serviceName = selection.ServiceName;
            if (lookup != ServiceLookup.Selected)
            {
                return lookup;
            }
            backend = selection.BackendAddress;
            backendPort = selection.BackendPort;
            ct.CreateService(key, now, backend, backendPort, ack);
        }
        if (!ServiceNat.RewriteDestination(packet, in layout, backend, backendPort))
        {
            return ServiceLookup.NotService;
        }
        key.Destination = backend;
        key.DestinationPort = backendPort;
        return ServiceLookup.Selected;
    }

    /// <summary>
    /// Turns a packet to a VIP without backends into an ICMP port unreachable from the VIP back to
    /// the client (ICMPv4 3/3, ICMPv6 1/4), quoting the packet's IP header and first 8 bytes of L4.
    /// Built in place from 16 bytes before the packet (the headroom) into the 32 behind it.
    /// </summary>
    private OverlayResult PortUnreachable(Span<byte> buffer, int packetOffset, int packetLength, in FlowKey key, in PacketLayout layout)
    {
        bool v6 = key.Source.IsV6;
        int ipHeader = v6 ? 40 : 20;
        int quote = Math.Min(packetLength, layout.TransportOffset + 8);
        int start = packetOffset - 16;
        int total = ipHeader + 8 + quote;
        if (start < 0 || start + total > buffer.Length || total > ushort.MaxValue)
        {
            return default;
        }
        buffer.Slice(packetOffset, quote).CopyTo(buffer.Slice(start + ipHeader + 8));
        var reply = buffer.Slice(start, total);
        reply[..(ipHeader + 8)].Clear();
        var vip = key.Destination;
        if (v6)
        {
            reply[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(reply[4..], (ushort)(8 + quote));
            reply[6] = IpProtocol.Icmpv6;
            reply[7] = 64;
            // key holds the untranslated VIP here (no backend was chosen).
            vip.WriteBytes(reply[8..]);
            key.Source.WriteBytes(reply[24..]);
            reply[40] = 1;   // destination unreachable
            reply[41] = 4;   // port unreachable
        }
        else
        {
            reply[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(reply[2..], (ushort)total);
            reply[8] = 64;
            reply[9] = IpProtocol.Icmp;
            vip.WriteBytes(reply[12..]);
            key.Source.WriteBytes(reply[16..]);
            BinaryPrimitives.WriteUInt16BigEndian(reply[10..], InternetChecksum.Compute(reply[..20]));
            reply[20] = 3;   // destination unreachable
            reply[21] = 3;   // port unreachable
        }
        TransportChecksum.TryFill(reply);
        return new OverlayResult(OverlayAction.Deliver, start, total, default, OverlayDrop.NoService, TunnelEvent.None);
    }

    // ------------------------------------------------------------------ inbound

    /// <summary>
    /// Handles one datagram received from <paramref name="source"/>: buffer[0, length), opened in
    /// place. The buffer should have room past the datagram (an ARP reply is sealed into it).
    /// </summary>
    public OverlayResult Inbound(in IpEndpoint source, Span<byte> buffer, int length)
    {
        var result = BeginInbound(source, buffer, length, out var ticket);
        return ticket.IsPending ? CompleteInbound(ticket, source, buffer, length) : result;
    }

    /// <summary><see cref="Inbound(in IpEndpoint, Span{byte}, int)"/> at the time <paramref name="nowNs"/>
    /// (the engine's clock, read once for a batch of datagrams).</summary>
    public OverlayResult Inbound(in IpEndpoint source, Span<byte> buffer, int length, long nowNs)
    {
        var result = BeginInbound(source, buffer, length, nowNs, out var ticket);
        return ticket.IsPending ? CompleteInbound(ticket, source, buffer, length) : result;
    }

    /// <summary><see cref="Inbound"/> split for pipelines that decrypt on worker threads: the
    /// engine's first half (any thread). When <paramref name="ticket"/> is pending, the caller runs
    /// <see cref="CompleteInbound"/> in arrival order; otherwise the result is final.</summary>
    public OverlayResult BeginInbound(in IpEndpoint source, Span<byte> buffer, int length, out OpenTicket ticket)
    {
        var result = _engine.BeginDecapsulate(source, buffer[..length], out ticket);
        return ticket.IsPending ? default : Count(Direction.Ingress, OverlayResult.FromTunnel(result));
    }

    /// <summary><see cref="BeginInbound(in IpEndpoint, Span{byte}, int, out OpenTicket)"/> at the time
    /// <paramref name="nowNs"/> (the engine's clock, read once for the batch); the ticket carries the
    /// reading to <see cref="CompleteInbound"/>, whose conntrack and timers run at that time too.</summary>
    public OverlayResult BeginInbound(in IpEndpoint source, Span<byte> buffer, int length, long nowNs, out OpenTicket ticket)
    {
        var result = _engine.BeginDecapsulate(source, buffer[..length], nowNs, out ticket);
        return ticket.IsPending ? default : Count(Direction.Ingress, OverlayResult.FromTunnel(result));
    }

    /// <summary>The in-order second half of <see cref="Inbound"/>: replay window and timers,
    /// then VXLAN, sender and policy checks.</summary>
    public OverlayResult CompleteInbound(in OpenTicket ticket, in IpEndpoint source, Span<byte> buffer, int length)
    {
        // The engine parsed the opened packet's IP header (source, length) for its allowed-IPs
        // check; the VXLAN read goes on from there instead of parsing that header again.
        var opened = _engine.CompleteDecapsulate(ticket, source, buffer[..length], out var outerSource);
        if (opened.Action != TunnelAction.DeliverToTun)
        {
            return Count(Direction.Ingress, OverlayResult.FromTunnel(opened));
        }
        var accepted = AcceptInbound(buffer, opened.Offset, opened.Length, opened.Peer?.PublicKey, opened.Reason, ticket.Now, outerSource);
        if (accepted.Action == OverlayAction.Send)
        {
            // An ARP reply for the sending node, sealed back to it.
            var reply = _engine.EncapsulateInPlace(buffer[(accepted.Offset - Messages.TransportHeaderSize)..], accepted.Length);
            return OverlayResult.FromTunnel(reply).At(accepted.Offset - Messages.TransportHeaderSize);
        }
        return accepted;
    }

    /// <summary>
    /// The encryption-independent part of the inbound path (shared by WireGuard and IPsec mode),
    /// for the IP packet at buffer[<paramref name="offset"/>, +<paramref name="length"/>) that the
    /// node <paramref name="sender"/> (null: unknown) sealed: VXLAN, the sender's tunnel address,
    /// the VNI bound to the sender, ingress policy. Deliver and Drop results are counted. A
    /// <see cref="OverlayAction.Send"/> result is an ARP reply (a VXLAN datagram at [Offset, +Length),
    /// with 16 bytes free in front) that the caller seals back to the sender.
    /// </summary>
    public OverlayResult AcceptInbound(Span<byte> buffer, int offset, int length, PublicKey? sender, TunnelEvent reason) =>
        AcceptInbound(buffer, offset, length, sender, reason, NowNs, parsedSource: null);

    /// <summary>
    /// <see cref="AcceptInbound(Span{byte}, int, int, PublicKey?, TunnelEvent)"/> at the time
    /// <paramref name="now"/>; <paramref name="parsedSource"/>, when set, is the packet's source as
    /// the engine parsed it (with the total length equal to <paramref name="length"/>), so its IP
    /// header is not parsed a second time.
    /// </summary>
    internal OverlayResult AcceptInbound(Span<byte> buffer, int offset, int length, PublicKey? sender, TunnelEvent reason, long now, IpAddress? parsedSource)
    {
        var packet = buffer.Slice(offset, length);
        IpAddress outerSource = default;
        uint vni;
        int frameOffset, frameLength;
        bool malformed;
        bool vxlan = parsedSource is { } known
            ? VxlanFrame.TryReadOpened(packet, outerSource = known, _options.TunnelAddress, _options.VxlanPort, out vni, out frameOffset, out frameLength, out malformed)
            : VxlanFrame.TryRead(packet, _options.TunnelAddress, _options.VxlanPort, out outerSource, out vni, out frameOffset, out frameLength, out malformed);
        if (!vxlan)
        {
            return InboundPlain(offset, length, reason, packet, now);
        }
        if (malformed)
        {
            return Count(Direction.Ingress, OverlayResult.Dropped(OverlayDrop.InvalidPacket));
        }
        var routing = Volatile.Read(ref _routing);
        // The VXLAN datagram must come from the tunnel address of the peer that sealed it.
        if (!routing.ByTunnel.TryGetValue(outerSource.V4, out var peer) || sender is not { } senderKey || peer.PublicKey != senderKey)
        {
            return Count(Direction.Ingress, OverlayResult.Dropped(OverlayDrop.UnknownSender));
        }
        var frame = packet.Slice(frameOffset, frameLength);
        peer.Learn(frame.Slice(6, 6));
        ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType == 0x0806)
        {
            return AnswerArp(buffer, offset, frame, peer);
        }
        if (etherType is not (0x0800 or 0x86DD))
        {
            return Count(Direction.Ingress, OverlayResult.Dropped(OverlayDrop.UnsupportedL3Protocol));
        }
        var inner = frame[VxlanFrame.EthernetLength..];
        if (FlowParser.ParseIp(inner, out var key, out var layout) != ParseStatus.Ok)
        {
            return Count(Direction.Ingress, OverlayResult.Dropped(OverlayDrop.InvalidPacket));
        }
        if (vni is 0 or > ReservedIdentity.MaxAllocated)
        {
            return Reject(key, Direction.Ingress, OverlayDrop.InvalidIdentity);
        }
        if (CheckSender(routing, peer, key, vni) is var forged and not OverlayDrop.None)
        {
            return Reject(key, Direction.Ingress, forged, vni);
        }
        if (!_local.TryLookup(key.Destination, out _))
        {
            return Reject(key, Direction.Ingress, OverlayDrop.UnknownL3TargetAddress, vni);
        }
        var decision = Decide(key, inner, layout, PolicyChecks.Ingress, now, vni);
        CountVerdict(Direction.Ingress, decision);
        if (!decision.Allowed)
        {
            return Count(Direction.Ingress, OverlayResult.Dropped(decision.DropReason == DropReason.PolicyDeny ? OverlayDrop.PolicyDeny : OverlayDrop.PolicyDenied));
        }
        if (decision.Conntrack == CtResult.Reply && key.Protocol is IpProtocol.Tcp or IpProtocol.Udp && Volatile.Read(ref _services) is not null &&
            _policy.Conntrack.Lookup(key, now, out var nat) == CtResult.Reply && nat.IsTranslated)
        {
            // A backend's reply to a client of this node: the client only ever sees the VIP.
            ServiceNat.RewriteSource(inner, in layout, nat.ServiceAddress, nat.ServicePort);
        }
        // Deliver the IP packet without the link padding a minimum-size frame may carry.
        int innerOffset = offset + frameOffset + VxlanFrame.EthernetLength;
        Interlocked.Increment(ref _forwards[(int)Direction.Ingress * CounterStride]);
        return new OverlayResult(OverlayAction.Deliver, innerOffset, layout.NetworkEnd, default, OverlayDrop.None, reason);
    }

    /// <summary>
    /// The policy decision for one parsed packet: an ICMP error (destination unreachable, time
    /// exceeded, packet too big, parameter problem) whose quoted packet belongs to a tracked flow
    /// is RELATED and passes without a rule of its own, as in Cilium; everything else goes through
    /// conntrack and policy. Allocation-free.
    /// </summary>
    private FlowDecision Decide(in FlowKey key, ReadOnlySpan<byte> packet, in PacketLayout layout, PolicyChecks checks, long now, uint sourceIdentity = 0,
        string? destinationService = null)
    {
        if (key.Protocol is IpProtocol.Icmp or IpProtocol.Icmpv6 && layout.TransportOffset >= 0 &&
            IcmpErrorQuote.IsError(key.Protocol, key.IcmpType) &&
            IcmpErrorQuote.TryParse(packet[layout.TransportOffset..], key.Protocol, out var quoted))
        {
            return _policy.ProcessIcmpError(key, quoted, now, checks, sourceIdentity);
        }
        // The overlay reads no identity of an established flow but the source's (the VNI on egress;
        // on ingress the VNI is given): the destination's ipcache lookup is skipped for those.
        return _policy.Process(key, now, checks, sourceIdentity, destinationService, destinationIdentityOnHit: false);
    }

    /// <summary>
    /// Binds the identity in the VNI to the node that sent it, so an authenticated node can speak
    /// only for its own workloads: the inner source must lie in the sending peer's pod CIDRs (its
    /// longest match among all peers' pod CIDRs is that peer), else <see cref="OverlayDrop.InvalidSourceIp"/>;
    /// and the VNI must be the identity this node's ipcache holds for the source (world for an
    /// address it does not know), else <see cref="OverlayDrop.InvalidIdentity"/>. The one
    /// exception is the peer node's own traffic from its tunnel address, which may only claim
    /// remote-node (as Cilium presents a remote node's host traffic; the host identity is never
    /// accepted from the wire). Allocation-free.
    /// </summary>
    private OverlayDrop CheckSender(Routing routing, OverlayPeer peer, in FlowKey key, uint vni)
    {
        if (key.Source == peer.TunnelAddress)
        {
            return vni == ReservedIdentity.RemoteNode ? OverlayDrop.None : OverlayDrop.InvalidIdentity;
        }
        if (!routing.ByPod.TryLookup(key.Source, out var owner) || !ReferenceEquals(owner, peer))
        {
            return OverlayDrop.InvalidSourceIp;
        }
        return _policy.Current.IpCache.Lookup(key.Source) == vni ? OverlayDrop.None : OverlayDrop.InvalidIdentity;
    }

    private OverlayResult InboundPlain(int offset, int length, TunnelEvent reason, ReadOnlySpan<byte> packet, long now)
    {
        // Plain traffic inside the tunnel: fine between nodes; for a local workload it carries no
        // identity, so the workload's ingress policy judges it by the sender's address.
        if (FlowParser.ParseIp(packet, out var key, out var layout) != ParseStatus.Ok)
        {
            return Count(Direction.Ingress, OverlayResult.Dropped(OverlayDrop.InvalidPacket));
        }
        if (_local.TryLookup(key.Destination, out _))
        {
            var decision = Decide(key, packet, layout, PolicyChecks.Ingress, now);
            CountVerdict(Direction.Ingress, decision);
            if (!decision.Allowed)
            {
                return Count(Direction.Ingress, OverlayResult.Dropped(decision.DropReason == DropReason.PolicyDeny ? OverlayDrop.PolicyDeny : OverlayDrop.PolicyDenied));
            }
        }
        return Count(Direction.Ingress, new OverlayResult(OverlayAction.Deliver, offset, length, default, OverlayDrop.None, reason));
    }

    /// <summary>Answers an ARP request for a local workload address with this node's MAC, so that a
    /// Linux vxlan device on the other side can resolve Gateway's workloads.</summary>
    private OverlayResult AnswerArp(Span<byte> buffer, int datagramOffset, ReadOnlySpan<byte> frame, OverlayPeer peer)
    {
        // Ethernet(14) + ARP for IPv4 over Ethernet (28): htype 1, ptype 0x0800, hlen 6, plen 4, op.
        if (frame.Length < 42 || BinaryPrimitives.ReadUInt16BigEndian(frame[14..]) != 1 ||
            BinaryPrimitives.ReadUInt16BigEndian(frame[16..]) != 0x0800 || frame[18] != 6 || frame[19] != 4 ||
            BinaryPrimitives.ReadUInt16BigEndian(frame[20..]) != 1)
        {
            return Count(Direction.Ingress, OverlayResult.Dropped(OverlayDrop.UnsupportedL3Protocol));
        }
        var target = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(frame[38..]));
        if (!_local.TryLookup(target, out _))
        {
            return Count(Direction.Ingress, OverlayResult.Dropped(OverlayDrop.UnknownL3TargetAddress));
        }
        Span<byte> requesterMac = stackalloc byte[6];
        frame.Slice(22, 6).CopyTo(requesterMac);
        uint requesterIp = BinaryPrimitives.ReadUInt32BigEndian(frame[28..]);

        // Build the reply where the request was: [16 header][50 VXLAN headers][28 ARP].
        int arpOffset = datagramOffset + VxlanFrame.Overhead;
        var arp = buffer.Slice(arpOffset, 28);
        BinaryPrimitives.WriteUInt16BigEndian(arp, 1);
        BinaryPrimitives.WriteUInt16BigEndian(arp[2..], 0x0800);
        arp[4] = 6;
        arp[5] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(arp[6..], 2);
        _mac.CopyTo(arp[8..]);
        BinaryPrimitives.WriteUInt32BigEndian(arp[14..], target.V4);
        requesterMac.CopyTo(arp[18..]);
        BinaryPrimitives.WriteUInt32BigEndian(arp[24..], requesterIp);
        VxlanFrame.Write(buffer.Slice(datagramOffset, VxlanFrame.Overhead), 28, _options.TunnelAddress, peer.TunnelAddress,
            _options.VxlanPort, ReservedIdentity.Host, _options.VxlanPort, requesterMac, _mac, 0x0806);
        return new OverlayResult(OverlayAction.Send, datagramOffset, VxlanFrame.Overhead + 28, default, OverlayDrop.None, TunnelEvent.None);
    }

    // ------------------------------------------------------------------ accounting

    private OverlayResult Reject(in FlowKey key, Direction direction, OverlayDrop reason, uint sourceIdentity = 0, string? destinationService = null)
    {
        var snapshot = _policy.Current;
        var ev = new FlowEvent
        {
            TimeUnixNs = (_clock.GetUtcNow().UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100,
            Verdict = FlowVerdict.Dropped,
            DropReason = (DropReason)(byte)reason,
            TrafficDirection = direction,
            Encrypted = true,
            Key = key,
            SourceIdentity = sourceIdentity != 0 ? sourceIdentity : snapshot.IpCache.Lookup(key.Source),
            DestinationIdentity = snapshot.IpCache.Lookup(key.Destination),
            RuleId = -1,
            PolicyVersion = snapshot.Version,
            DestinationService = destinationService,
        };
        _policy.Events.TryWrite(ev);
        return Count(direction, OverlayResult.Dropped(reason));
    }

    /// <summary>The egress result of an engine call made on buffer[start..], counted. The common
    /// outcome (a datagram to send) is built in one step: the general path copies the result
    /// through three conversions, which shows per packet.</summary>
    private OverlayResult Sent(in TunnelResult sealedResult, int start)
    {
        if (sealedResult.Action == TunnelAction.SendToNetwork)
        {
            Interlocked.Increment(ref _forwards[(int)Direction.Egress * CounterStride]);
            return new OverlayResult(OverlayAction.Send, sealedResult.Offset + start, sealedResult.Length, sealedResult.Endpoint, OverlayDrop.None,
                sealedResult.Reason);
        }
        return Count(Direction.Egress, OverlayResult.FromTunnel(sealedResult).At(start));
    }

    private OverlayResult Count(Direction direction, in OverlayResult result)
    {
        if (result.Action == OverlayAction.Drop)
        {
            Interlocked.Increment(ref _drops[(int)direction * 256 + (int)result.Drop]);
        }
        else if (result.Action is OverlayAction.Send or OverlayAction.Deliver)
        {
            Interlocked.Increment(ref _forwards[(int)direction * CounterStride]);
        }
        return result;
    }

    [Conditional("DEBUG")]
    private static void Check(bool condition) => Debug.Assert(condition);
}
