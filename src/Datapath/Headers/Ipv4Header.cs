using System.Buffers.Binary;

namespace Gateway.Datapath;

/*
 IPv4 header (RFC 791 section 3.1):
  0                   1                   2                   3
  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |Version|  IHL  |Type of Service|          Total Length         |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |         Identification        |Flags|      Fragment Offset    |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |  Time to Live |    Protocol   |         Header Checksum       |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                       Source Address                          |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                    Destination Address                        |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                    Options                    |    Padding    |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 Flags: bit 0 reserved (must be zero), bit 1 DF, bit 2 MF. Offset in 8-octet units.
*/

/// <summary>Fields of an IPv4 header (addresses in host order).</summary>
public struct Ipv4Header
{
    public const int MinLength = 20;
    public const int MaxLength = 60;

    /// <summary>Header length in bytes (IHL * 4), 20..60.</summary>
    public int HeaderLength;
    public byte TypeOfService;
    public ushort TotalLength;
    public ushort Identification;
    public bool DontFragment;
    public bool MoreFragments;
    /// <summary>Fragment offset in 8-byte units (0..8191).</summary>
    public ushort FragmentOffset;
    public byte TimeToLive;
    public byte Protocol;
    public ushort HeaderChecksum;
    public uint Source;
    public uint Destination;

    public readonly int OptionsLength => HeaderLength - MinLength;
    public readonly bool IsFragment => MoreFragments || FragmentOffset != 0;
    public readonly int PayloadLength => TotalLength - HeaderLength;

    /// <summary>
    /// Reads and validates an IPv4 header at the start of <paramref name="packet"/>:
    /// version 4, IHL &gt;= 5, options present, IHL*4 &lt;= total length &lt;= span length.
    /// Trailing bytes after the total length (Ethernet padding) are allowed.
    /// </summary>
    public static ParseStatus TryRead(ReadOnlySpan<byte> packet, out Ipv4Header header)
    {
        header = default;
        if (packet.Length < MinLength)
        {
            return ParseStatus.Truncated;
        }
        byte vihl = packet[0];
        if (vihl >> 4 != 4)
        {
            return ParseStatus.BadVersion;
        }
        int hl = (vihl & 0x0F) << 2;
        if (hl < MinLength)
        {
            return ParseStatus.BadHeaderLength;
        }
        if (hl > packet.Length)
        {
            return ParseStatus.Truncated;
        }
        ushort total = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(2));
        if (total < hl)
        {
            return total < MinLength ? ParseStatus.BadTotalLength : ParseStatus.BadHeaderLength;
        }
        if (total > packet.Length)
        {
            return ParseStatus.BadTotalLength;
        }
        ushort frag = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(6));
        header.HeaderLength = hl;
        header.TypeOfService = packet[1];
        header.TotalLength = total;
        header.Identification = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(4));
        header.DontFragment = (frag & 0x4000) != 0;
        header.MoreFragments = (frag & 0x2000) != 0;
        header.FragmentOffset = (ushort)(frag & 0x1FFF);
        header.TimeToLive = packet[8];
        header.Protocol = packet[9];
        header.HeaderChecksum = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(10));
        header.Source = BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(12));
        header.Destination = BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(16));
        return ParseStatus.Ok;
    }

    /// <summary>
    /// Writes this header (20 bytes plus <paramref name="options"/>, which must be a multiple of 4
    /// and at most 40) and fills the header checksum. Returns the header length written.
    /// </summary>
    public readonly int Write(Span<byte> destination, ReadOnlySpan<byte> options = default)
    {
        if (options.Length % 4 != 0 || options.Length > MaxLength - MinLength)
        {
            throw new ArgumentException("IPv4 options must be a multiple of 4 bytes, at most 40.", nameof(options));
        }
        int hl = MinLength + options.Length;
        if (destination.Length < hl)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        if (FragmentOffset > 0x1FFF)
        {
            throw new ArgumentOutOfRangeException(nameof(FragmentOffset));
        }
        destination[0] = (byte)(0x40 | (hl >> 2));
        destination[1] = TypeOfService;
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(2), TotalLength);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(4), Identification);
        ushort frag = (ushort)((DontFragment ? 0x4000 : 0) | (MoreFragments ? 0x2000 : 0) | FragmentOffset);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(6), frag);
        destination[8] = TimeToLive;
        destination[9] = Protocol;
        destination[10] = 0;
        destination[11] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(12), Source);
        BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(16), Destination);
        options.CopyTo(destination.Slice(MinLength));
        FillChecksum(destination.Slice(0, hl));
        return hl;
    }

    /// <summary>Computes and stores the header checksum of the header at the start of
    /// <paramref name="header"/> (its IHL decides the length). False if the span is too short.</summary>
    public static bool FillChecksum(Span<byte> header)
    {
        if (header.Length < MinLength)
        {
            return false;
        }
        int hl = (header[0] & 0x0F) << 2;
        if (hl < MinLength || hl > header.Length)
        {
            return false;
        }
        header[10] = 0;
        header[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(header.Slice(10), InternetChecksum.Compute(header.Slice(0, hl)));
        return true;
    }

    /// <summary>True when the header checksum of the header at the start of the span is correct.</summary>
    public static bool VerifyChecksum(ReadOnlySpan<byte> header)
    {
        if (header.Length < MinLength)
        {
            return false;
        }
        int hl = (header[0] & 0x0F) << 2;
        if (hl < MinLength || hl > header.Length)
        {
            return false;
        }
        // The ones' complement sum over a header including a correct checksum is 0xFFFF.
        return InternetChecksum.Fold(InternetChecksum.Add(0, header.Slice(0, hl))) == 0xFFFF;
    }
}
