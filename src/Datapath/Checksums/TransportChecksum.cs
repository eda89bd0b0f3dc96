using System.Buffers.Binary;

namespace Gateway.Datapath;

/// <summary>
/// TCP, UDP and ICMP checksums over IPv4 and IPv6. TCP/UDP (and ICMPv6) cover a pseudo-header:
/// <code>
///  IPv4 (RFC 9293 3.1, RFC 768):        IPv6 (RFC 8200 8.1):
///  +--------+--------+--------+--------+ +-----------------------------------+
///  |          Source Address           | |      Source Address (16 octets)   |
///  +--------+--------+--------+--------+ +-----------------------------------+
///  |        Destination Address        | |   Destination Address (16 octets) |
///  +--------+--------+--------+--------+ +-----------------------------------+
///  |  zero  |  PTCL  |  TCP/UDP Length | |    Upper-Layer Packet Length (4)  |
///  +--------+--------+--------+--------+ +-----------------------------------+
///                                        |      zero (3)        | Next Header|
///                                        +-----------------------------------+
/// </code>
/// ICMPv4 has no pseudo-header. A computed UDP checksum of 0 is sent as 0xFFFF; a received UDP
/// checksum of 0 over IPv4 means "none" and verifies, over IPv6 it is invalid.
/// </summary>
public static class TransportChecksum
{
    /// <summary>Partial sum of the IPv4 pseudo-header (addresses in host order).</summary>
    public static ulong PseudoHeaderV4(uint source, uint destination, byte protocol, int length)
    {
        ulong sum = InternetChecksum.Add(0, source);
        sum = InternetChecksum.Add(sum, destination);
        sum += protocol;
        return sum + (uint)length;
    }

    /// <summary>Partial sum of the IPv6 pseudo-header (addresses as 16 network-order bytes).</summary>
    public static ulong PseudoHeaderV6(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, byte protocol, int length)
    {
        if (source.Length != 16 || destination.Length != 16)
        {
            throw new ArgumentException("IPv6 addresses are 16 bytes.");
        }
        ulong sum = InternetChecksum.Add(0, source);
        sum = InternetChecksum.Add(sum, destination);
        sum += protocol;
        return InternetChecksum.Add(sum, (uint)length);
    }

    /// <summary>Fills the TCP, UDP, ICMPv4 or ICMPv6 checksum of a complete, unfragmented IP
    /// packet in place. False when the packet cannot be parsed or carries another protocol.</summary>
    public static bool TryFill(Span<byte> ipPacket)
    {
        if (!TryLocate(ipPacket, out var l4))
        {
            return false;
        }
        Span<byte> segment = ipPacket.Slice(l4.Offset, l4.Length);
        segment[l4.ChecksumOffset] = 0;
        segment[l4.ChecksumOffset + 1] = 0;
        ushort value = InternetChecksum.Finish(InternetChecksum.Add(l4.PseudoSum, segment));
        if (value == 0 && l4.Protocol == IpProtocol.Udp)
        {
            value = 0xFFFF;   // 0 would mean "no checksum"
        }
        BinaryPrimitives.WriteUInt16BigEndian(segment.Slice(l4.ChecksumOffset), value);
        return true;
    }

    /// <summary>True when the TCP, UDP, ICMPv4 or ICMPv6 checksum of a complete, unfragmented IP
    /// packet is correct. False for anything unparsable or another protocol.</summary>
    public static bool Verify(ReadOnlySpan<byte> ipPacket)
    {
        if (!TryLocate(ipPacket, out var l4))
        {
            return false;
        }
        ReadOnlySpan<byte> segment = ipPacket.Slice(l4.Offset, l4.Length);
        if (l4.Protocol == IpProtocol.Udp && !l4.IsV6 &&
            BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(6)) == 0)
        {
            return true;   // IPv4 UDP without checksum
        }
        return InternetChecksum.Fold(InternetChecksum.Add(l4.PseudoSum, segment)) == 0xFFFF;
    }

    private struct L4Location
    {
        public int Offset;
        public int Length;
        public int ChecksumOffset;
        public byte Protocol;
        public bool IsV6;
        public ulong PseudoSum;
    }

    private static bool TryLocate(ReadOnlySpan<byte> ip, out L4Location l4)
    {
        l4 = default;
        if (ip.IsEmpty)
        {
            return false;
        }
        int payloadOffset;
        int payloadEnd;
        byte protocol;
        if (ip[0] >> 4 == 4)
        {
            if (Ipv4Header.TryRead(ip, out var h4) != ParseStatus.Ok || h4.IsFragment)
            {
                return false;
            }
            payloadOffset = h4.HeaderLength;
            payloadEnd = h4.TotalLength;
            protocol = h4.Protocol;
        }
        else if (ip[0] >> 4 == 6)
        {
            if (Ipv6Header.TryRead(ip, out var h6) != ParseStatus.Ok)
            {
                return false;
            }
            ReadOnlySpan<byte> payload = ip.Slice(Ipv6Header.Length, h6.PayloadLength);
            if (Ipv6Extensions.TryWalk(payload, h6.NextHeader, out var ext) != ParseStatus.Ok || ext.IsFragment)
            {
                return false;
            }
            payloadOffset = Ipv6Header.Length + ext.TransportOffset;
            payloadEnd = Ipv6Header.Length + h6.PayloadLength;
            protocol = ext.Protocol;
            l4.IsV6 = true;
        }
        else
        {
            return false;
        }

        int length = payloadEnd - payloadOffset;
        switch (protocol)
        {
            case IpProtocol.Tcp:
                if (length < TcpHeader.MinLength) return false;
                l4.ChecksumOffset = 16;
                break;
            case IpProtocol.Udp:
                if (length < UdpHeader.Length) return false;
                int udpLength = BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(payloadOffset + 4));
                if (udpLength < UdpHeader.Length || udpLength > length) return false;
                length = udpLength;
                l4.ChecksumOffset = 6;
                break;
            case IpProtocol.Icmp:
                if (l4.IsV6 || length < 4) return false;
                l4.ChecksumOffset = 2;
                break;
            case IpProtocol.Icmpv6:
                if (!l4.IsV6 || length < 4) return false;
                l4.ChecksumOffset = 2;
                break;
            default:
                return false;
        }
        l4.Offset = payloadOffset;
        l4.Length = length;
        l4.Protocol = protocol;
        if (protocol != IpProtocol.Icmp)
        {
            l4.PseudoSum = l4.IsV6
                ? PseudoHeaderV6(ip.Slice(8, 16), ip.Slice(24, 16), protocol, length)
                : PseudoHeaderV4(BinaryPrimitives.ReadUInt32BigEndian(ip.Slice(12)),
                    BinaryPrimitives.ReadUInt32BigEndian(ip.Slice(16)), protocol, length);
        }
        return true;
    }
}
