using Gateway.Datapath;

namespace Gateway.Node.Replay;

/// <summary>Why a capture cannot be replayed (unreadable, empty, or not two-sided). The CLI turns it into exit 2.</summary>
public sealed class ReplayInputException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A capture loaded into memory as bare IP packets, and the split of its addresses into the two
/// simulated nodes. Link layers (Ethernet, VLAN, Linux cooked, raw IP) are stripped and each packet
/// is trimmed to its IP total length (Ethernet padding removed) so the round trip can be compared
/// byte for byte. Frames that are not IP (ARP, ...) or do not parse are skipped and counted.
/// </summary>
/// <remarks>
/// Node split: for every flow (addresses, protocol, ports or ICMP id, in either direction) the
/// address that sent its first packet is the initiator. Initiators live behind node A, responders
/// behind node B, each as a host prefix (/32, /128). Packets from an A address go A to B, all others
/// B to A. An address that both initiates and answers flows cannot be placed and is an error.
/// </remarks>
public sealed class ReplayCapture
{
    private ReplayCapture(byte[] data, int[] offsets, int[] lengths, bool[] fromA, int[] flows, IpAddress[] sideA, IpAddress[] sideB,
        long skipped, LinkType linkType)
    {
        Flows = flows;
        Data = data;
        Offsets = offsets;
        Lengths = lengths;
        FromA = fromA;
        SideA = sideA;
        SideB = sideB;
        Skipped = skipped;
        LinkType = linkType;
    }

    /// <summary>All packets back to back; packet i is Data[Offsets[i], +Lengths[i]).</summary>
    public byte[] Data { get; }
    public int[] Offsets { get; }
    public int[] Lengths { get; }
    /// <summary>True when packet i is sent by node A (its source is an initiator).</summary>
    public bool[] FromA { get; }
    /// <summary>Flow number of packet i (0, 1, ... in order of first appearance, both directions share one).</summary>
    public int[] Flows { get; }
    public int FlowCount => Flows.Length == 0 ? 0 : Flows.Max() + 1;
    public IpAddress[] SideA { get; }
    public IpAddress[] SideB { get; }
    /// <summary>Frames skipped: not IP, truncated by the snap length, or unparsable.</summary>
    public long Skipped { get; }
    public LinkType LinkType { get; }
    public int Count => Offsets.Length;
    public int MaxLength { get; private init; }
    public long TotalBytes { get; private init; }

    public ReadOnlySpan<byte> Packet(int index) => Data.AsSpan(Offsets[index], Lengths[index]);

    private readonly record struct FlowId(IpAddress A, IpAddress B, byte Protocol, ushort PortA, ushort PortB);

    public static ReplayCapture Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        CaptureFileReader reader;
        try
        {
            reader = CaptureFileReader.Open(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new ReplayInputException($"cannot read capture '{path}': {e.Message}", e);
        }
        using (reader)
        {
            return LoadCore(reader);
        }
    }

    private static ReplayCapture LoadCore(CaptureFileReader reader)
    {
        var bytes = new List<byte>(1 << 16);
        var offsets = new List<int>();
        var lengths = new List<int>();
        var keys = new List<FlowKey>();
        long skipped = 0;
        try
        {
            while (reader.TryReadNext(out var frame))
            {
                if (frame.IsTruncated || LinkLayer.TryRead(reader.LinkType, frame.Data, out var link) != ParseStatus.Ok ||
                    link.NetworkOffset >= frame.Data.Length)
                {
                    skipped++;
                    continue;
                }
                var ip = frame.Data[link.NetworkOffset..];
                if (FlowParser.ParseIp(ip, out var key, out var layout) != ParseStatus.Ok || layout.NetworkEnd <= 0)
                {
                    skipped++;
                    continue;
                }
                ip = ip[..layout.NetworkEnd];
                offsets.Add(bytes.Count);
                lengths.Add(ip.Length);
                bytes.AddRange(ip);
                keys.Add(key);
            }
        }
        catch (CaptureFileException e)
        {
            throw new ReplayInputException(e.Message, e);
        }
        if (offsets.Count == 0)
        {
            throw new ReplayInputException($"the capture holds no IP packets ({skipped} frame(s) skipped)");
        }

        // Who started each flow decides the node an address lives behind.
        var initiators = new HashSet<IpAddress>();
        var responders = new HashSet<IpAddress>();
        var seen = new Dictionary<FlowId, int>();
        var flows = new int[keys.Count];
        for (int i = 0; i < keys.Count; i++)
        {
            var key = keys[i];
            ushort sport = key.Protocol is IpProtocol.Icmp or IpProtocol.Icmpv6 ? key.IcmpId : key.SourcePort;
            ushort dport = key.Protocol is IpProtocol.Icmp or IpProtocol.Icmpv6 ? key.IcmpId : key.DestinationPort;
            var forward = new FlowId(key.Source, key.Destination, key.Protocol, sport, dport);
            var reverse = new FlowId(key.Destination, key.Source, key.Protocol, dport, sport);
            if (seen.TryGetValue(forward, out flows[i]) || seen.TryGetValue(reverse, out flows[i]))
            {
                continue;
            }
            flows[i] = seen.Count;
            seen.Add(forward, flows[i]);
            initiators.Add(key.Source);
            responders.Add(key.Destination);
        }
        foreach (var address in initiators)
        {
            if (responders.Contains(address))
            {
                throw new ReplayInputException($"{address} both starts and answers flows; replay needs clients and servers on distinct addresses");
            }
        }
        var fromA = new bool[keys.Count];
        for (int i = 0; i < keys.Count; i++)
        {
            fromA[i] = initiators.Contains(keys[i].Source);
        }
        var data = bytes.ToArray();
        return new ReplayCapture(data, offsets.ToArray(), lengths.ToArray(), fromA, flows,
            initiators.OrderBy(a => a.ToString(), StringComparer.Ordinal).ToArray(),
            responders.OrderBy(a => a.ToString(), StringComparer.Ordinal).ToArray(), skipped, reader.LinkType)
        {
            MaxLength = lengths.Max(),
            TotalBytes = lengths.Sum(l => (long)l),
        };
    }

    /// <summary>Host prefixes (/32 or /128) for a list of addresses.</summary>
    public static IpPrefix[] HostPrefixes(IEnumerable<IpAddress> addresses) =>
        addresses.Select(a => new IpPrefix(a, a.IsV4 ? 32 : 128)).ToArray();
}
