using System.Buffers.Binary;

namespace Gateway.Datapath;

/*
 IPv6 header (RFC 8200 section 3):
  0                   1                   2                   3
  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |Version| Traffic Class |           Flow Label                  |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |         Payload Length        |  Next Header  |   Hop Limit   |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                     Source Address (128 bits)                 |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                  Destination Address (128 bits)               |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
*/

/// <summary>Fields of the fixed IPv6 header (addresses as big-endian numeric values).</summary>
public struct Ipv6Header
{
    public const int Length = 40;

    public byte TrafficClass;
    /// <summary>20-bit flow label.</summary>
    public uint FlowLabel;
    public ushort PayloadLength;
    public byte NextHeader;
    public byte HopLimit;
    public UInt128 Source;
    public UInt128 Destination;

    /// <summary>Reads and validates the fixed header: version 6 and 40 + payload length &lt;= span
    /// (jumbograms, payload length 0 with a Jumbo option, are not supported and read as empty).</summary>
    public static ParseStatus TryRead(ReadOnlySpan<byte> packet, out Ipv6Header header)
    {
        header = default;
        if (packet.Length < Length)
        {
            return ParseStatus.Truncated;
        }
        uint first = BinaryPrimitives.ReadUInt32BigEndian(packet);
        if (first >> 28 != 6)
        {
            return ParseStatus.BadVersion;
        }
        ushort payload = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(4));
        if (Length + payload > packet.Length)
        {
            return ParseStatus.BadTotalLength;
        }
        header.TrafficClass = (byte)(first >> 20);
        header.FlowLabel = first & 0xFFFFF;
        header.PayloadLength = payload;
        header.NextHeader = packet[6];
        header.HopLimit = packet[7];
        header.Source = BinaryPrimitives.ReadUInt128BigEndian(packet.Slice(8));
        header.Destination = BinaryPrimitives.ReadUInt128BigEndian(packet.Slice(24));
        return ParseStatus.Ok;
    }

    /// <summary>Writes the 40-byte fixed header; returns 40.</summary>
    public readonly int Write(Span<byte> destination)
    {
        if (destination.Length < Length)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        if (FlowLabel > 0xFFFFF)
        {
            throw new ArgumentOutOfRangeException(nameof(FlowLabel));
        }
        BinaryPrimitives.WriteUInt32BigEndian(destination, (6u << 28) | ((uint)TrafficClass << 20) | FlowLabel);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(4), PayloadLength);
        destination[6] = NextHeader;
        destination[7] = HopLimit;
        BinaryPrimitives.WriteUInt128BigEndian(destination.Slice(8), Source);
        BinaryPrimitives.WriteUInt128BigEndian(destination.Slice(24), Destination);
        return Length;
    }
}

/// <summary>What walking the IPv6 extension header chain found.</summary>
public struct Ipv6ExtensionInfo
{
    /// <summary>The upper-layer protocol (or 59 no-next-header, 50 ESP) after the chain.</summary>
    public byte Protocol;
    /// <summary>Offset of the upper-layer header from the start of the IPv6 payload.</summary>
    public int TransportOffset;
    /// <summary>Number of extension headers walked.</summary>
    public int Count;
    public bool IsFragment;
    /// <summary>Fragment offset in 8-byte units.</summary>
    public ushort FragmentOffset;
    public bool MoreFragments;
    public uint FragmentIdentification;
}

/// <summary>
/// Walker over IPv6 extension headers (RFC 8200 section 4, AH per RFC 4302).
/// <code>
///  Hop-by-Hop (0), Routing (43), Destination Options (60):
///  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///  |  Next Header  |  Hdr Ext Len  |  (Hdr Ext Len + 1) * 8 octets  |
///  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///  Fragment (44), always 8 octets:
///  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///  |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
///  |                         Identification                        |
///  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///  Authentication Header (51): length field counts 4-octet words minus 2:
///  |  Next Header  |  Payload Len  |          Reserved             |
/// </code>
/// </summary>
public static class Ipv6Extensions
{
    /// <summary>Headers walked before giving up (a guard against chains built to burn CPU).</summary>
    public const int MaxHeaders = 8;

    public static bool IsExtensionHeader(byte nextHeader) =>
        nextHeader is IpProtocol.HopByHop or IpProtocol.Routing or IpProtocol.Fragment
            or IpProtocol.DestinationOptions or IpProtocol.Ah;

    /// <summary>
    /// Writes a Hop-by-Hop, Routing or Destination Options header of <paramref name="length"/>
    /// bytes (a multiple of 8, 8..2048) whose body is padding (Pad1/PadN) — the shape used to
    /// carry or reserve room for options. Returns <paramref name="length"/>.
    /// </summary>
    public static int WritePaddedHeader(Span<byte> destination, byte nextHeader, int length)
    {
        if (length < 8 || length > 2048 || length % 8 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length));
        }
        if (destination.Length < length)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        destination[0] = nextHeader;
        destination[1] = (byte)(length / 8 - 1);
        Span<byte> body = destination.Slice(2, length - 2);
        body.Clear();
        // PadN carries at most 255 data bytes; chain PadN options to fill the body.
        int at = 0;
        while (body.Length - at >= 2)
        {
            int data = Math.Min(255, body.Length - at - 2);
            body[at] = 1;
            body[at + 1] = (byte)data;
            at += 2 + data;
        }
        return length;   // a single leftover byte stays 0 = Pad1
    }

    /// <summary>Writes an 8-byte Fragment header; <paramref name="fragmentOffset"/> in 8-byte units. Returns 8.</summary>
    public static int WriteFragmentHeader(Span<byte> destination, byte nextHeader, ushort fragmentOffset, bool moreFragments, uint identification)
    {
        if (fragmentOffset > 0x1FFF)
        {
            throw new ArgumentOutOfRangeException(nameof(fragmentOffset));
        }
        if (destination.Length < 8)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        destination[0] = nextHeader;
        destination[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(2), (ushort)((fragmentOffset << 3) | (moreFragments ? 1 : 0)));
        BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(4), identification);
        return 8;
    }

    /// <summary>Walks the chain starting with <paramref name="nextHeader"/> over the IPv6 payload.
    /// Stops at the first non-extension header (TCP, UDP, ICMPv6, ESP, no-next-header, ...), and
    /// after a non-first fragment, whose remaining bytes are the middle of the datagram.</summary>
    public static ParseStatus TryWalk(ReadOnlySpan<byte> payload, byte nextHeader, out Ipv6ExtensionInfo info)
    {
        info = default;
        int offset = 0;
        while (IsExtensionHeader(nextHeader))
        {
            if (info.Count == MaxHeaders)
            {
                return ParseStatus.TooManyExtensionHeaders;
            }
            if (nextHeader == IpProtocol.HopByHop && info.Count != 0)
            {
                // RFC 8200 4.1: Hop-by-Hop must immediately follow the IPv6 header.
                return ParseStatus.BadExtensionHeader;
            }
            if (payload.Length - offset < 8)
            {
                return ParseStatus.Truncated;
            }
            ReadOnlySpan<byte> h = payload.Slice(offset);
            byte next = h[0];
            int length;
            if (nextHeader == IpProtocol.Fragment)
            {
                if (info.IsFragment)
                {
                    return ParseStatus.BadExtensionHeader;   // two fragment headers
                }
                length = 8;
                ushort fo = BinaryPrimitives.ReadUInt16BigEndian(h.Slice(2));
                info.IsFragment = true;
                info.FragmentOffset = (ushort)(fo >> 3);
                info.MoreFragments = (fo & 1) != 0;
                info.FragmentIdentification = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(4));
            }
            else if (nextHeader == IpProtocol.Ah)
            {
                length = (h[1] + 2) * 4;
                if (length < 12)
                {
                    return ParseStatus.BadExtensionHeader;   // shorter than AH's fixed part
                }
            }
            else
            {
                length = (h[1] + 1) * 8;
            }
            if (length > payload.Length - offset)
            {
                return ParseStatus.Truncated;
            }
            offset += length;
            info.Count++;
            nextHeader = next;
            if (info.IsFragment && info.FragmentOffset != 0)
            {
                break;   // later fragment: what follows is not a header
            }
        }
        info.Protocol = nextHeader;
        info.TransportOffset = offset;
        return ParseStatus.Ok;
    }
}
