using System.Runtime.InteropServices;

namespace Gateway.Datapath;

/// <summary>Where a packet sits in a fragmented IP datagram.</summary>
public enum FragmentState : byte
{
    /// <summary>Not a fragment: the whole datagram, L4 header present.</summary>
    None = 0,
    /// <summary>First fragment (offset 0, more fragments): L4 header present.</summary>
    First = 1,
    /// <summary>Later fragment (offset &gt; 0): no L4 header, ports and ICMP fields are 0.</summary>
    Later = 2,
}

/// <summary>IANA "Assigned Internet Protocol Numbers" used by the datapath.</summary>
public static class IpProtocol
{
    public const byte HopByHop = 0;
    public const byte Icmp = 1;
    public const byte Igmp = 2;
    public const byte IpInIp = 4;
    public const byte Tcp = 6;
    public const byte Udp = 17;
    public const byte Ipv6 = 41;
    public const byte Routing = 43;
    public const byte Fragment = 44;
    public const byte Gre = 47;
    public const byte Esp = 50;
    public const byte Ah = 51;
    public const byte Icmpv6 = 58;
    public const byte NoNextHeader = 59;
    public const byte DestinationOptions = 60;
    public const byte Sctp = 132;
}

/// <summary>
/// The flow identity of one IP packet, filled in one pass over its headers.
/// Equality and hashing cover the 5-tuple plus ICMP type and identifier; <see cref="TcpFlags"/>
/// and <see cref="Fragment"/> describe this packet, not the flow, so they are left out.
/// </summary>
[StructLayout(LayoutKind.Auto)]
public struct FlowKey : IEquatable<FlowKey>
{
    public IpAddress Source;
    public IpAddress Destination;
    /// <summary>IANA number of the final L4 header (after IPv6 extension headers).</summary>
    public byte Protocol;
    /// <summary>TCP/UDP/SCTP source port; 0 otherwise.</summary>
    public ushort SourcePort;
    /// <summary>TCP/UDP/SCTP destination port; 0 otherwise.</summary>
    public ushort DestinationPort;
    /// <summary>ICMPv4/ICMPv6 type; 0 otherwise.</summary>
    public byte IcmpType;
    /// <summary>ICMPv4/ICMPv6 code; 0 otherwise.</summary>
    public byte IcmpCode;
    /// <summary>ICMP echo identifier (echo request/reply); 0 otherwise.</summary>
    public ushort IcmpId;
    /// <summary>TCP flags: FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 (ECE=64 CWR=128).</summary>
    public byte TcpFlags;
    public FragmentState Fragment;

    /// <summary>4 or 6 (from the source address family).</summary>
    public readonly int IpVersion => Source.IsV6 ? 6 : 4;

    /// <summary>The key of the reply direction: addresses and ports swapped; ICMP keeps its id.</summary>
    public readonly FlowKey Reversed()
    {
        FlowKey r = this;
        r.Source = Destination;
        r.Destination = Source;
        r.SourcePort = DestinationPort;
        r.DestinationPort = SourcePort;
        return r;
    }

    public readonly bool Equals(FlowKey other) =>
        Source == other.Source && Destination == other.Destination &&
        Protocol == other.Protocol && SourcePort == other.SourcePort &&
        DestinationPort == other.DestinationPort && IcmpType == other.IcmpType &&
        IcmpId == other.IcmpId;

    public override readonly bool Equals(object? obj) => obj is FlowKey other && Equals(other);

    public override readonly int GetHashCode() =>
        HashCode.Combine(Source, Destination, Protocol, SourcePort, DestinationPort, IcmpType, IcmpId);

    public static bool operator ==(FlowKey left, FlowKey right) => left.Equals(right);
    public static bool operator !=(FlowKey left, FlowKey right) => !left.Equals(right);

    public override readonly string ToString()
    {
        string proto = Protocol switch
        {
            IpProtocol.Tcp => "TCP",
            IpProtocol.Udp => "UDP",
            IpProtocol.Icmp => "ICMP",
            IpProtocol.Icmpv6 => "ICMPv6",
            IpProtocol.Sctp => "SCTP",
            _ => "proto " + Protocol,
        };
        if (Protocol is IpProtocol.Icmp or IpProtocol.Icmpv6)
        {
            return $"{Source} -> {Destination} {proto} type {IcmpType} code {IcmpCode} id {IcmpId}";
        }
        if (Protocol is IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.Sctp)
        {
            return $"{Format(Source, SourcePort)} -> {Format(Destination, DestinationPort)} {proto}";
        }
        return $"{Source} -> {Destination} {proto}";
    }

    private static string Format(IpAddress address, ushort port) =>
        address.IsV6 ? $"[{address}]:{port}" : $"{address}:{port}";
}
