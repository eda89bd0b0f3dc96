using System.Buffers.Binary;

namespace Gateway.Datapath.Audit;

/// <summary>What the audit decided a packet is.</summary>
public enum PacketClass
{
    /// <summary>A WireGuard message (by structure, on any port).</summary>
    WireGuard,
    /// <summary>IPsec ESP (protocol 50): encrypted, not WireGuard.</summary>
    IpsecEsp,
    /// <summary>VXLAN or Geneve in plaintext (its inner packet may or may not be cluster traffic).</summary>
    PlaintextOverlay,
    /// <summary>IP traffic between two cluster addresses, not encrypted and not a tunnel.</summary>
    PlaintextCluster,
    /// <summary>Everything else: non-IP (ARP, LLDP), IP with a non-cluster end, control traffic about tunnels.</summary>
    Other,
    /// <summary>Frames the parsers rejected (the reason is counted).</summary>
    Unparsable,
}

/// <summary>Options of one audit run.</summary>
public sealed class AuditOptions
{
    /// <summary>RFC 1918 private IPv4 ranges and IPv6 unique local addresses (RFC 4193).</summary>
    public static readonly IReadOnlyList<IpPrefix> DefaultClusterPrefixes =
    [
        IpPrefix.Parse("10.0.0.0/8"),
        IpPrefix.Parse("172.16.0.0/12"),
        IpPrefix.Parse("192.168.0.0/16"),
        IpPrefix.Parse("fc00::/7"),
    ];

    /// <summary>Cluster address ranges; empty means <see cref="DefaultClusterPrefixes"/>.</summary>
    public IReadOnlyList<IpPrefix> ClusterPrefixes { get; init; } = [];

    /// <summary>Extra UDP destination ports carrying VXLAN (8472 and 4789 are always included).</summary>
    public IReadOnlyList<ushort> TunnelPorts { get; init; } = [];

    /// <summary>How many offending packets the report lists.</summary>
    public int MaxOffenders { get; init; } = 10;

    internal IReadOnlyList<IpPrefix> EffectiveClusterPrefixes => ClusterPrefixes.Count > 0 ? ClusterPrefixes : DefaultClusterPrefixes;
}

/// <summary>One packet that carried cluster traffic in plaintext.</summary>
public sealed record Offender(
    long Number,
    DateTime TimestampUtc,
    string Kind,
    FlowKey Outer,
    FlowKey? Inner,
    uint? Vni);

/// <summary>WireGuard messages seen between two underlay endpoints (both directions).</summary>
public sealed class WireGuardFlow
{
    internal WireGuardFlow(IpAddress a, ushort aPort, IpAddress b, ushort bPort)
    {
        EndpointA = a; PortA = aPort; EndpointB = b; PortB = bPort;
    }

    public IpAddress EndpointA { get; }
    public ushort PortA { get; }
    public IpAddress EndpointB { get; }
    public ushort PortB { get; }
    public long Initiations { get; internal set; }
    public long Responses { get; internal set; }
    public long CookieReplies { get; internal set; }
    public long TransportMessages { get; internal set; }
    public long TransportBytes { get; internal set; }
    /// <summary>Highest transport counter seen (a rough measure of session age).</summary>
    public ulong MaxCounter { get; internal set; }
    internal HashSet<uint> ReceiverIndexSet { get; } = [];
    /// <summary>Distinct receiver indices in transport messages (one per session and direction).</summary>
    public int ReceiverIndices => ReceiverIndexSet.Count;

    public string Describe() => $"{Format(EndpointA, PortA)} <-> {Format(EndpointB, PortB)}";

    internal static string Format(IpAddress address, ushort port) => address.IsV6 ? $"[{address}]:{port}" : $"{address}:{port}";
}

/// <summary>Plaintext overlay traffic per outer endpoint pair and VNI.</summary>
public sealed class OverlayFlow
{
    internal OverlayFlow(string protocol, IpAddress source, IpAddress destination, uint vni)
    {
        Protocol = protocol; Source = source; Destination = destination; Vni = vni;
    }

    public string Protocol { get; }
    public IpAddress Source { get; }
    public IpAddress Destination { get; }
    public uint Vni { get; }
    public long Packets { get; internal set; }
    /// <summary>Packets whose inner packet is cluster traffic in plaintext.</summary>
    public long ClusterPackets { get; internal set; }
}

/// <summary>The result of auditing a capture.</summary>
public sealed class AuditReport
{
    public LinkType LinkType { get; internal set; }
    public long TotalPackets { get; internal set; }
    public long TruncatedBySnapLength { get; internal set; }
    public Dictionary<PacketClass, long> Counts { get; } = Enum.GetValues<PacketClass>().ToDictionary(c => c, _ => 0L);
    public Dictionary<ParseStatus, long> UnparsableReasons { get; } = [];
    public List<WireGuardFlow> WireGuardFlows { get; } = [];
    public List<OverlayFlow> OverlayFlows { get; } = [];
    public List<Offender> Offenders { get; } = [];
    /// <summary>All packets that carried cluster traffic in plaintext (directly or inside an overlay).</summary>
    public long LeakPackets { get; internal set; }
    public IReadOnlyList<IpPrefix> ClusterPrefixes { get; internal set; } = [];
    public IReadOnlyList<ushort> VxlanPorts { get; internal set; } = [];

    public bool IsLeak => LeakPackets > 0;
    public string Verdict => IsLeak ? "LEAK" : "ENCRYPTED";

    /// <summary>True when the capture shows plaintext overlay and no WireGuard at all: the typical
    /// picture of a capture taken on the tunnel (or a pod) interface, before encryption.</summary>
    public bool LooksLikeTunnelInterface => Counts[PacketClass.PlaintextOverlay] > 0 && Counts[PacketClass.WireGuard] == 0;
}

/// <summary>
/// Classifies every packet of a capture (see docs/audit.md for the rules) and decides whether
/// cluster traffic crossed the wire in plaintext. Feed packets with <see cref="Add"/> (or use
/// <see cref="AuditFile"/>), then read <see cref="Report"/>.
/// </summary>
public sealed class CaptureAuditor
{
    private readonly IReadOnlyList<IpPrefix> _cluster;
    private readonly HashSet<ushort> _vxlanPorts;
    private readonly int _maxOffenders;
    private readonly Dictionary<(IpAddress, ushort, IpAddress, ushort), WireGuardFlow> _wireGuard = [];
    private readonly HashSet<(IpAddress, ushort)> _wireGuardEndpoints = [];
    private readonly Dictionary<(string, IpAddress, IpAddress, uint), OverlayFlow> _overlay = [];
    private readonly Dictionary<(IpAddress, IpAddress, byte, uint), (PacketClass Class, bool Leak)> _fragments = [];
    private readonly WireGuardSessionEvidence _sessions = new();
    private bool _learnedAhead;
    private byte[] _scratch = new byte[2048];

    public CaptureAuditor(LinkType linkType, AuditOptions? options = null)
    {
        options ??= new AuditOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxOffenders);
        _cluster = options.EffectiveClusterPrefixes;
        _vxlanPorts = [Vxlan.LinuxPort, Vxlan.IanaPort, .. options.TunnelPorts];
        _maxOffenders = options.MaxOffenders;
        Report = new AuditReport
        {
            LinkType = linkType,
            ClusterPrefixes = _cluster,
            VxlanPorts = _vxlanPorts.Order().ToArray(),
        };
    }

    public AuditReport Report { get; }

    /// <summary>Audits a capture file. Throws <see cref="CaptureFileException"/> when unreadable.</summary>
    /// <remarks>The file is read twice: the first pass learns which WireGuard sessions the
    /// capture establishes (handshakes, 16-aligned transport), so that full-size transport
    /// messages seen before that evidence are judged with all of it.</remarks>
    public static AuditReport AuditFile(string path, AuditOptions? options = null)
    {
        CaptureAuditor auditor;
        using (var reader = CaptureFileReader.Open(path))
        {
            auditor = new CaptureAuditor(reader.LinkType, options);
            while (reader.TryReadNext(out CapturedPacket packet))
            {
                auditor.Learn(packet.Data, packet.OriginalLength);
            }
        }
        auditor.EndLearning();
        using (var reader = CaptureFileReader.Open(path))
        {
            while (reader.TryReadNext(out CapturedPacket packet))
            {
                auditor.Add(packet.Data, packet.TimestampUtc, packet.OriginalLength);
            }
        }
        return auditor.Report;
    }

    /// <summary>
    /// Learns WireGuard session evidence from one packet without classifying it (the first pass
    /// of <see cref="AuditFile"/>). A caller that feeds every packet to <see cref="Learn"/> first
    /// must then call <see cref="Add"/> for each packet in the same order after
    /// <see cref="EndLearning"/>; a caller that only calls <see cref="Add"/> gets the evidence seen so far.
    /// </summary>
    public void Learn(ReadOnlySpan<byte> frame, int originalLength = -1)
    {
        frame = RestoreSnapped(frame, originalLength);
        if (FlowParser.Parse(Report.LinkType, frame, out FlowKey key, out PacketLayout layout) != ParseStatus.Ok ||
            key.Fragment == FragmentState.Later || key.Protocol != IpProtocol.Udp || layout.PayloadOffset < 0)
        {
            return;
        }
        ReadOnlySpan<byte> payload = frame.Slice(layout.PayloadOffset, layout.PayloadLength);
        int datagram = layout.UdpDatagramLength - UdpHeader.Length;
        if (WireGuardHeader.TryRead(payload, out WireGuardHeader wg, datagram) == ParseStatus.Ok)
        {
            _sessions.LearnStructural(key, wg);
        }
        else if (WireGuardSessionEvidence.IsTransportShape(payload, datagram, out uint receiver, out ulong counter))
        {
            _sessions.LearnCapped(key, receiver, counter);
        }
    }

    /// <summary>Marks the end of a <see cref="Learn"/> pass: <see cref="Add"/> stops learning.</summary>
    public void EndLearning() => _learnedAhead = true;

    /// <summary>Classifies the next packet of the capture.</summary>
    /// <param name="frame">Captured bytes.</param>
    /// <param name="timestampUtc">Capture time.</param>
    /// <param name="originalLength">Length on the wire; when the snap length cut the packet the
    /// missing tail is treated as zeros so the headers still classify (length fields stay honest).</param>
    public PacketClass Add(ReadOnlySpan<byte> frame, DateTime timestampUtc, int originalLength = -1)
    {
        long number = ++Report.TotalPackets;
        if (originalLength > frame.Length)
        {
            Report.TruncatedBySnapLength++;
        }
        if (!_learnedAhead)
        {
            Learn(frame, originalLength);
        }
        frame = RestoreSnapped(frame, originalLength);

        var (cls, leak, offender) = Classify(Report.LinkType, frame, number, timestampUtc);
        Report.Counts[cls]++;
        if (leak)
        {
            Report.LeakPackets++;
            if (offender is not null && Report.Offenders.Count < _maxOffenders)
            {
                Report.Offenders.Add(offender);
            }
        }
        return cls;
    }

    /// <summary>A frame cut by the snap length, with its missing tail as zeros (length fields stay honest).</summary>
    private ReadOnlySpan<byte> RestoreSnapped(ReadOnlySpan<byte> frame, int originalLength)
    {
        if (originalLength <= frame.Length)
        {
            return frame;
        }
        int length = Math.Min(originalLength, 65536 + 64);
        if (_scratch.Length < length)
        {
            _scratch = new byte[length];
        }
        Span<byte> padded = _scratch.AsSpan(0, length);
        frame.Slice(0, Math.Min(frame.Length, length)).CopyTo(padded);
        padded.Slice(Math.Min(frame.Length, length)).Clear();
        return padded;
    }

    private (PacketClass, bool, Offender?) Classify(LinkType linkType, ReadOnlySpan<byte> frame, long number, DateTime time)
    {
        ParseStatus status = FlowParser.Parse(linkType, frame, out FlowKey key, out PacketLayout layout);
        if (status == ParseStatus.NotIp)
        {
            return (PacketClass.Other, false, null);
        }
        if (status != ParseStatus.Ok)
        {
            Report.UnparsableReasons[status] = Report.UnparsableReasons.GetValueOrDefault(status) + 1;
            return (PacketClass.Unparsable, false, null);
        }

        if (key.Fragment == FragmentState.Later)
        {
            // The datagram's first fragment decided; without it, be conservative for cluster pairs.
            if (_fragments.TryGetValue((key.Source, key.Destination, key.Protocol, layout.FragmentId), out var known))
            {
                return (known.Class, known.Leak, known.Leak ? new Offender(number, time, "fragment of plaintext cluster traffic", key, null, null) : null);
            }
            bool clusterPair = IsCluster(key.Source) && IsCluster(key.Destination);
            return clusterPair
                ? (PacketClass.PlaintextCluster, true, new Offender(number, time, "fragment between cluster addresses", key, null, null))
                : (PacketClass.Other, false, null);
        }

        var result = ClassifyIp(frame, key, layout, number, time);
        if (key.Fragment == FragmentState.First)
        {
            _fragments[(key.Source, key.Destination, key.Protocol, layout.FragmentId)] = (result.Item1, result.Item2);
        }
        return result;
    }

    private (PacketClass, bool, Offender?) ClassifyIp(ReadOnlySpan<byte> frame, FlowKey key, PacketLayout layout, long number, DateTime time)
    {
        if (key.Protocol == IpProtocol.Esp)
        {
            return (PacketClass.IpsecEsp, false, null);
        }

        if (key.Protocol == IpProtocol.Udp && layout.PayloadOffset >= 0)
        {
            ReadOnlySpan<byte> payload = frame.Slice(layout.PayloadOffset, layout.PayloadLength);

            // Overlay first: VXLAN and WireGuard headers cannot be confused (flags byte 0x08 vs
            // type 1..4), and the overlay port is the stronger signal.
            if (_vxlanPorts.Contains(key.DestinationPort) && Vxlan.TryRead(payload, out _) == ParseStatus.Ok)
            {
                ParseStatus innerStatus = FlowParser.ParseVxlanPayload(payload, out uint vni, out FlowKey inner, out PacketLayout innerLayout);
                if (innerStatus is not (ParseStatus.Ok or ParseStatus.NotIp))
                {
                    LenientInner(payload.Slice(Vxlan.HeaderLength), ethernet: true, ref innerStatus, ref inner);
                }
                return Overlay("VXLAN", key, vni, payload, innerStatus, inner, innerLayout, number, time);
            }
            if (key.DestinationPort == GeneveHeader.Port &&
                GeneveHeader.TryRead(payload, out GeneveHeader geneve) == ParseStatus.Ok)
            {
                ParseStatus innerStatus = FlowParser.ParseGenevePayload(payload, out uint vni, out FlowKey inner, out PacketLayout innerLayout);
                if (innerStatus is not (ParseStatus.Ok or ParseStatus.NotIp or ParseStatus.BadGeneveHeader))
                {
                    LenientInner(payload.Slice(geneve.HeaderLength), geneve.ProtocolType == EtherType.TransparentEthernetBridging, ref innerStatus, ref inner);
                }
                return Overlay("Geneve", key, vni, payload, innerStatus, inner, innerLayout, number, time);
            }

            int datagram = layout.UdpDatagramLength - UdpHeader.Length;
            if (WireGuardHeader.TryRead(payload, out WireGuardHeader wg, datagram) == ParseStatus.Ok)
            {
                CountWireGuard(key, wg, datagram);
                return (PacketClass.WireGuard, false, null);
            }
            // A full-size transport message: padding stopped at the MTU, so its length is not
            // 32 + 16k. Believed only inside a session the capture establishes.
            if (WireGuardSessionEvidence.IsTransportShape(payload, datagram, out uint receiver, out ulong counter) &&
                _sessions.AcceptCapped(key, receiver, counter))
            {
                var transport = new WireGuardHeader { MessageType = WireGuardMessageType.TransportData, ReceiverIndex = receiver, Counter = counter };
                CountWireGuard(key, transport, datagram);
                return (PacketClass.WireGuard, false, null);
            }
        }

        if (!IsCluster(key.Source) || !IsCluster(key.Destination))
        {
            return (PacketClass.Other, false, null);
        }

        if (key.Protocol == IpProtocol.Icmpv6 && key.IcmpType is >= 133 and <= 137)
        {
            // IPv6 neighbor discovery (router/neighbor solicitation and advertisement, redirect):
            // link control, the IPv6 counterpart of ARP, between the underlay addresses themselves.
            return (PacketClass.Other, false, null);
        }

        if (IsIcmpErrorAboutTunnel(frame, key, layout))
        {
            // e.g. "port unreachable" quoting a WireGuard or VXLAN datagram: it reveals only the
            // quoted outer headers of traffic that is itself classified on its own.
            return (PacketClass.Other, false, null);
        }

        return (PacketClass.PlaintextCluster, true, new Offender(number, time, "plaintext between cluster addresses", key, null, null));
    }

    private (PacketClass, bool, Offender?) Overlay(string protocol, FlowKey outer, uint vni, ReadOnlySpan<byte> payload,
        ParseStatus innerStatus, FlowKey inner, PacketLayout innerLayout, long number, DateTime time)
    {
        var flowKey = (protocol, outer.Source, outer.Destination, vni);
        if (!_overlay.TryGetValue(flowKey, out OverlayFlow? flow))
        {
            flow = new OverlayFlow(protocol, outer.Source, outer.Destination, vni);
            _overlay[flowKey] = flow;
            Report.OverlayFlows.Add(flow);
        }
        flow.Packets++;

        // The inner packet may parse (IP) or not (ARP, truncated); only IP between cluster
        // addresses that is not itself WireGuard counts as a leak.
        if (innerStatus != ParseStatus.Ok)
        {
            return (PacketClass.PlaintextOverlay, false, null);
        }
        if (inner.Protocol == IpProtocol.Udp && innerLayout.PayloadOffset >= 0 &&
            WireGuardHeader.TryRead(payload.Slice(innerLayout.PayloadOffset, innerLayout.PayloadLength),
                out _, innerLayout.UdpDatagramLength - UdpHeader.Length) == ParseStatus.Ok)
        {
            return (PacketClass.PlaintextOverlay, false, null);
        }
        if (inner.Protocol == IpProtocol.Esp || !IsCluster(inner.Source) || !IsCluster(inner.Destination))
        {
            return (PacketClass.PlaintextOverlay, false, null);
        }
        flow.ClusterPackets++;
        return (PacketClass.PlaintextOverlay, true, new Offender(number, time, $"{protocol} carrying plaintext cluster traffic", outer, inner, vni));
    }

    /// <summary>
    /// The inner packet of a plaintext overlay datagram failed the strict parse (typically a
    /// first IP fragment of a large VXLAN datagram, whose inner length fields point past the
    /// fragment). Its addresses are still on the wire in plaintext, so read them leniently: a
    /// plaintext inner packet between cluster addresses is a leak whatever its length fields say.
    /// </summary>
    private static void LenientInner(ReadOnlySpan<byte> innerStart, bool ethernet, ref ParseStatus status, ref FlowKey inner)
    {
        int offset = 0;
        if (ethernet)
        {
            ParseStatus link = LinkLayer.TryReadEthernet(innerStart, out LinkLayerInfo info);
            if (link != ParseStatus.Ok)
            {
                return;
            }
            offset = info.NetworkOffset;
        }
        ReadOnlySpan<byte> ip = innerStart.Slice(offset);
        if (ip.Length >= Ipv4Header.MinLength && ip[0] >> 4 == 4)
        {
            inner = new FlowKey
            {
                Source = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(ip.Slice(12))),
                Destination = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(ip.Slice(16))),
                Protocol = ip[9],
            };
            status = ParseStatus.Ok;
        }
        else if (ip.Length >= Ipv6Header.Length && ip[0] >> 4 == 6)
        {
            inner = new FlowKey
            {
                Source = IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(ip.Slice(8))),
                Destination = IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(ip.Slice(24))),
                Protocol = ip[6],
            };
            status = ParseStatus.Ok;
        }
    }

    private void CountWireGuard(FlowKey key, WireGuardHeader wg, int datagramLength)
    {
        // One entry per unordered endpoint pair, so both directions of a session add up.
        bool swap = key.Source.CompareTo(key.Destination) > 0 ||
                    key.Source == key.Destination && key.SourcePort > key.DestinationPort;
        var id = swap
            ? (key.Destination, key.DestinationPort, key.Source, key.SourcePort)
            : (key.Source, key.SourcePort, key.Destination, key.DestinationPort);
        if (!_wireGuard.TryGetValue(id, out WireGuardFlow? flow))
        {
            flow = new WireGuardFlow(id.Item1, id.Item2, id.Item3, id.Item4);
            _wireGuard[id] = flow;
            Report.WireGuardFlows.Add(flow);
        }
        _wireGuardEndpoints.Add((key.Source, key.SourcePort));
        _wireGuardEndpoints.Add((key.Destination, key.DestinationPort));
        switch (wg.MessageType)
        {
            case WireGuardMessageType.HandshakeInitiation: flow.Initiations++; break;
            case WireGuardMessageType.HandshakeResponse: flow.Responses++; break;
            case WireGuardMessageType.CookieReply: flow.CookieReplies++; break;
            default:
                flow.TransportMessages++;
                flow.TransportBytes += datagramLength;
                flow.MaxCounter = Math.Max(flow.MaxCounter, wg.Counter);
                flow.ReceiverIndexSet.Add(wg.ReceiverIndex);
                break;
        }
    }

    private bool IsIcmpErrorAboutTunnel(ReadOnlySpan<byte> frame, FlowKey key, PacketLayout layout)
    {
        bool v6 = key.Protocol == IpProtocol.Icmpv6;
        if (!(key.Protocol == IpProtocol.Icmp || v6) || layout.PayloadOffset < 0 ||
            !(v6 ? IcmpHeader.V6IsError(key.IcmpType) : IcmpHeader.V4IsError(key.IcmpType)))
        {
            return false;
        }
        // The quoted packet is cut short, so read it by hand instead of with the strict parser.
        ReadOnlySpan<byte> quoted = frame.Slice(layout.PayloadOffset, layout.PayloadLength);
        int l4;
        byte protocol;
        if (!v6 && quoted.Length >= 20 && quoted[0] >> 4 == 4)
        {
            l4 = (quoted[0] & 0x0F) * 4;
            protocol = quoted[9];
        }
        else if (v6 && quoted.Length >= 40 && quoted[0] >> 4 == 6)
        {
            l4 = 40;
            protocol = quoted[6];
        }
        else
        {
            return false;
        }
        if (protocol != IpProtocol.Udp || quoted.Length < l4 + 8)
        {
            return false;
        }
        ushort sport = BinaryPrimitives.ReadUInt16BigEndian(quoted.Slice(l4));
        ushort dport = BinaryPrimitives.ReadUInt16BigEndian(quoted.Slice(l4 + 2));
        if (_vxlanPorts.Contains(dport) || dport == GeneveHeader.Port)
        {
            return true;
        }
        // The quoted datagram was sent by one end of this ICMP message: match a WireGuard endpoint.
        IpAddress qsrc = v6 ? IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(quoted.Slice(8)))
                            : IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(quoted.Slice(12)));
        IpAddress qdst = v6 ? IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(quoted.Slice(24)))
                            : IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(quoted.Slice(16)));
        if (_wireGuardEndpoints.Contains((qsrc, sport)) || _wireGuardEndpoints.Contains((qdst, dport)))
        {
            return true;
        }
        ReadOnlySpan<byte> qpayload = quoted.Slice(l4 + 8);
        return qpayload.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(qpayload) is >= 1 and <= 4;
    }

    private bool IsCluster(IpAddress address)
    {
        foreach (IpPrefix prefix in _cluster)
        {
            if (prefix.Contains(address))
            {
                return true;
            }
        }
        return false;
    }
}
