using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>
/// Reads the packet quoted inside an ICMP error so conntrack can tell whether the error is
/// related to a tracked flow. Never throws and never reads past the span.
/// <code>
///   ICMPv4 (RFC 792) / ICMPv6 (RFC 4443) error message:
///    0                   1                   2                   3
///   +---------------+---------------+-------------------------------+
///   |     Type      |     Code      |           Checksum            |
///   +---------------+---------------+-------------------------------+
///   |          unused / MTU / pointer (4 bytes)                     |
///   +---------------------------------------------------------------+
///   |  quoted IP header (+ options / extension headers)             |
///   |  first 8 bytes (at least) of the quoted L4 header: ports      |
///   +---------------------------------------------------------------+
/// </code>
/// Error types: ICMPv4 3 destination unreachable, 4 source quench, 11 time exceeded,
/// 12 parameter problem; ICMPv6 1 destination unreachable, 2 packet too big, 3 time exceeded,
/// 4 parameter problem.
/// </summary>
public static class IcmpErrorQuote
{
    /// <summary>True if this ICMP type (of the given family) is an error that quotes a packet.</summary>
    public static bool IsError(byte protocol, byte type) => protocol switch
    {
        IpProtocol.Icmp => type is 3 or 4 or 11 or 12,
        IpProtocol.Icmpv6 => type is >= 1 and <= 4,
        _ => false,
    };

    /// <summary>
    /// Parses the ICMP message (starting at its type byte) of protocol <paramref name="protocol"/>
    /// (ICMP or ICMPv6) and fills <paramref name="quoted"/> with the flow key of the quoted packet.
    /// Returns false if it is not an error message or the quote is too short to give a flow key.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> icmp, byte protocol, out FlowKey quoted)
    {
        quoted = default;
        if (icmp.Length < 8 || !IsError(protocol, icmp[0]))
        {
            return false;
        }
        var ip = icmp[8..];
        return protocol == IpProtocol.Icmp ? TryParseV4(ip, ref quoted) : TryParseV6(ip, ref quoted);
    }

    private static bool TryParseV4(ReadOnlySpan<byte> ip, ref FlowKey key)
    {
        if (ip.Length < 20 || ip[0] >> 4 != 4)
        {
            return false;
        }
        int ihl = (ip[0] & 0x0F) * 4;
        if (ihl < 20 || ip.Length < ihl)
        {
            return false;
        }
        key.Source = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(ip[12..]));
        key.Destination = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(ip[16..]));
        key.Protocol = ip[9];
        bool laterFragment = (BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x1FFF) != 0;
        if (laterFragment)
        {
            key.Fragment = FragmentState.Later;
            return true;
        }
        return ReadPorts(ip[ihl..], ref key);
    }

    private static bool TryParseV6(ReadOnlySpan<byte> ip, ref FlowKey key)
    {
        if (ip.Length < 40 || ip[0] >> 4 != 6)
        {
            return false;
        }
        key.Source = IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(ip[8..]));
        key.Destination = IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(ip[24..]));
        byte next = ip[6];
        int offset = 40;
        // Walk the extension headers a quote may carry; stop at the upper-layer header.
        for (int hops = 0; hops < 8; hops++)
        {
            switch (next)
            {
                case IpProtocol.HopByHop:
                case IpProtocol.Routing:
                case IpProtocol.DestinationOptions:
                    if (ip.Length < offset + 2)
                    {
                        return false;
                    }
                    next = ip[offset];
                    offset += (ip[offset + 1] + 1) * 8;
                    continue;
                case IpProtocol.Fragment:
                    if (ip.Length < offset + 8)
                    {
                        return false;
                    }
                    bool later = (BinaryPrimitives.ReadUInt16BigEndian(ip[(offset + 2)..]) & 0xFFF8) != 0;
                    next = ip[offset];
                    offset += 8;
                    if (later)
                    {
                        key.Protocol = next;
                        key.Fragment = FragmentState.Later;
                        return true;
                    }
                    continue;
            }
            break;
        }
        if (offset > ip.Length)
        {
            return false;
        }
        key.Protocol = next;
        return ReadPorts(ip[offset..], ref key);
    }

    private static bool ReadPorts(ReadOnlySpan<byte> l4, ref FlowKey key)
    {
        switch (key.Protocol)
        {
            case IpProtocol.Tcp:
            case IpProtocol.Udp:
            case IpProtocol.Sctp:
                if (l4.Length < 4)
                {
                    return false;
                }
                key.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(l4);
                key.DestinationPort = BinaryPrimitives.ReadUInt16BigEndian(l4[2..]);
                return true;
            case IpProtocol.Icmp:
            case IpProtocol.Icmpv6:
                if (l4.Length < 8)
                {
                    return false;
                }
                key.IcmpType = l4[0];
                key.IcmpCode = l4[1];
                key.IcmpId = BinaryPrimitives.ReadUInt16BigEndian(l4[4..]);
                return true;
            default:
                return true; // other protocols are tracked without ports
        }
    }
}
