using System.Buffers.Binary;

namespace Gateway.Datapath;

/*
 UDP header (RFC 768):
  0      7 8     15 16    23 24    31
 +--------+--------+--------+--------+
 |   Source Port   | Destination Port|
 +--------+--------+--------+--------+
 |     Length      |    Checksum     |
 +--------+--------+--------+--------+
*/

/// <summary>Fields of a UDP header.</summary>
public struct UdpHeader
{
    public const int Length = 8;

    public ushort SourcePort;
    public ushort DestinationPort;
    /// <summary>Header + data length as sent (may exceed the bytes of a first fragment).</summary>
    public ushort DatagramLength;
    public ushort Checksum;

    /// <summary>Reads the 8-byte header. The length field is checked against the IP payload by the
    /// caller (it is the whole datagram's length even inside a first fragment).</summary>
    public static ParseStatus TryRead(ReadOnlySpan<byte> segment, out UdpHeader header)
    {
        header = default;
        if (segment.Length < Length)
        {
            return ParseStatus.Truncated;
        }
        header.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(segment);
        header.DestinationPort = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(2));
        header.DatagramLength = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(4));
        header.Checksum = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(6));
        return ParseStatus.Ok;
    }

    /// <summary>Writes the header with checksum 0 (fill it with <see cref="TransportChecksum"/>). Returns 8.</summary>
    public readonly int Write(Span<byte> destination)
    {
        if (destination.Length < Length)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        BinaryPrimitives.WriteUInt16BigEndian(destination, SourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(2), DestinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(4), DatagramLength);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(6), Checksum);
        return Length;
    }
}

/*
 TCP header (RFC 9293 section 3.1):
  0                   1                   2                   3
  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |          Source Port          |       Destination Port        |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                        Sequence Number                        |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                    Acknowledgment Number                      |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |  Data |       |C|E|U|A|P|R|S|F|                               |
 | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |           Checksum            |         Urgent Pointer        |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
*/

/// <summary>TCP flag bits as they appear in byte 13 of the header.</summary>
public static class TcpFlags
{
    public const byte Fin = 0x01, Syn = 0x02, Rst = 0x04, Psh = 0x08, Ack = 0x10, Urg = 0x20, Ece = 0x40, Cwr = 0x80;
}

/// <summary>Fields of a TCP header (options stay in the packet).</summary>
public struct TcpHeader
{
    public const int MinLength = 20;

    public ushort SourcePort;
    public ushort DestinationPort;
    public uint SequenceNumber;
    public uint AcknowledgmentNumber;
    /// <summary>Header length in bytes (data offset * 4), 20..60.</summary>
    public int HeaderLength;
    public byte Flags;
    public ushort Window;
    public ushort Checksum;
    public ushort UrgentPointer;

    /// <summary>Reads and validates: data offset &gt;= 5 and the options present in the span.</summary>
    public static ParseStatus TryRead(ReadOnlySpan<byte> segment, out TcpHeader header)
    {
        header = default;
        if (segment.Length < MinLength)
        {
            return ParseStatus.Truncated;
        }
        int hl = (segment[12] >> 4) << 2;
        if (hl < MinLength)
        {
            return ParseStatus.BadHeaderLength;
        }
        if (hl > segment.Length)
        {
            return ParseStatus.BadL4Length;
        }
        header.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(segment);
        header.DestinationPort = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(2));
        header.SequenceNumber = BinaryPrimitives.ReadUInt32BigEndian(segment.Slice(4));
        header.AcknowledgmentNumber = BinaryPrimitives.ReadUInt32BigEndian(segment.Slice(8));
        header.HeaderLength = hl;
        header.Flags = segment[13];
        header.Window = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(14));
        header.Checksum = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(16));
        header.UrgentPointer = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(18));
        return ParseStatus.Ok;
    }

    /// <summary>Writes the header plus <paramref name="options"/> (multiple of 4, at most 40).
    /// <see cref="HeaderLength"/> is derived from the options. Returns bytes written.</summary>
    public readonly int Write(Span<byte> destination, ReadOnlySpan<byte> options = default)
    {
        if (options.Length % 4 != 0 || options.Length > 40)
        {
            throw new ArgumentException("TCP options must be a multiple of 4 bytes, at most 40.", nameof(options));
        }
        int hl = MinLength + options.Length;
        if (destination.Length < hl)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        BinaryPrimitives.WriteUInt16BigEndian(destination, SourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(2), DestinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(4), SequenceNumber);
        BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(8), AcknowledgmentNumber);
        destination[12] = (byte)((hl >> 2) << 4);
        destination[13] = Flags;
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(14), Window);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(16), Checksum);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(18), UrgentPointer);
        options.CopyTo(destination.Slice(MinLength));
        return hl;
    }
}

/*
 ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) share the first 8 octets' layout;
 echo request/reply (and ICMPv4's timestamp/information/address-mask queries) carry an
 identifier and sequence number in the second word:
  0                   1                   2                   3
  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |     Type      |     Code      |          Checksum             |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |           Identifier          |        Sequence Number        |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
*/

/// <summary>Fields of an ICMPv4 or ICMPv6 header.</summary>
public struct IcmpHeader
{
    public const int MinLength = 4;
    public const int EchoLength = 8;

    public byte Type;
    public byte Code;
    public ushort Checksum;
    /// <summary>Identifier of query messages (echo etc.); 0 for other types.</summary>
    public ushort Identifier;
    /// <summary>Sequence number of query messages; 0 for other types.</summary>
    public ushort SequenceNumber;

    /// <summary>True for ICMPv4 query types that carry an identifier (echo, timestamp, information, address mask).</summary>
    public static bool V4HasIdentifier(byte type) => type is 0 or 8 or 13 or 14 or 15 or 16 or 17 or 18;

    /// <summary>True for ICMPv6 echo request/reply (128/129).</summary>
    public static bool V6HasIdentifier(byte type) => type is 128 or 129;

    /// <summary>True for ICMPv4 error messages, which quote the offending packet.</summary>
    public static bool V4IsError(byte type) => type is 3 or 4 or 5 or 11 or 12;

    /// <summary>True for ICMPv6 error messages (types below 128).</summary>
    public static bool V6IsError(byte type) => type < 128;

    /// <summary>Reads the header; query types need 8 bytes, others 4.</summary>
    public static ParseStatus TryRead(ReadOnlySpan<byte> message, bool isV6, out IcmpHeader header)
    {
        header = default;
        if (message.Length < MinLength)
        {
            return ParseStatus.Truncated;
        }
        header.Type = message[0];
        header.Code = message[1];
        header.Checksum = BinaryPrimitives.ReadUInt16BigEndian(message.Slice(2));
        if (isV6 ? V6HasIdentifier(header.Type) : V4HasIdentifier(header.Type))
        {
            if (message.Length < EchoLength)
            {
                return ParseStatus.Truncated;
            }
            header.Identifier = BinaryPrimitives.ReadUInt16BigEndian(message.Slice(4));
            header.SequenceNumber = BinaryPrimitives.ReadUInt16BigEndian(message.Slice(6));
        }
        return ParseStatus.Ok;
    }

    /// <summary>Writes type, code, checksum, identifier and sequence (8 bytes). Returns 8.</summary>
    public readonly int Write(Span<byte> destination)
    {
        if (destination.Length < EchoLength)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        destination[0] = Type;
        destination[1] = Code;
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(2), Checksum);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(4), Identifier);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(6), SequenceNumber);
        return EchoLength;
    }
}
