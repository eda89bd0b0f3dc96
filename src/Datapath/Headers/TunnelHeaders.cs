using System.Buffers.Binary;

namespace Gateway.Datapath;

/*
 VXLAN header (RFC 7348 section 5), carried in UDP (IANA port 4789, Linux default 8472):
  0                   1                   2                   3
  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |R|R|R|R|I|R|R|R|            Reserved                           |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                VXLAN Network Identifier (VNI) |   Reserved    |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 followed by the inner Ethernet frame.
*/

/// <summary>VXLAN header reader/writer.</summary>
public static class Vxlan
{
    public const int HeaderLength = 8;
    public const ushort IanaPort = 4789;
    public const ushort LinuxPort = 8472;
    /// <summary>The I flag: the VNI field is valid. RFC 7348 says it MUST be 1.</summary>
    public const byte FlagValidVni = 0x08;
    public const uint MaxVni = 0xFFFFFF;

    /// <summary>Reads the VNI. Reserved bits are ignored on receipt as RFC 7348 requires; only the
    /// I flag is checked.</summary>
    public static ParseStatus TryRead(ReadOnlySpan<byte> udpPayload, out uint vni)
    {
        vni = 0;
        if (udpPayload.Length < HeaderLength)
        {
            return ParseStatus.Truncated;
        }
        if ((udpPayload[0] & FlagValidVni) == 0)
        {
            return ParseStatus.BadVxlanHeader;
        }
        vni = BinaryPrimitives.ReadUInt32BigEndian(udpPayload.Slice(4)) >> 8;
        return ParseStatus.Ok;
    }

    /// <summary>True when the header also has all reserved fields zero (stricter, for classifying
    /// unknown traffic where a loose match would cause false positives).</summary>
    public static bool IsStrict(ReadOnlySpan<byte> udpPayload) =>
        udpPayload.Length >= HeaderLength && udpPayload[0] == FlagValidVni &&
        udpPayload[1] == 0 && udpPayload[2] == 0 && udpPayload[3] == 0 && udpPayload[7] == 0;

    /// <summary>Writes the 8-byte header; returns 8.</summary>
    public static int Write(Span<byte> destination, uint vni)
    {
        if (vni > MaxVni)
        {
            throw new ArgumentOutOfRangeException(nameof(vni));
        }
        if (destination.Length < HeaderLength)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)FlagValidVni << 24);
        BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(4), vni << 8);
        return HeaderLength;
    }
}

/*
 Geneve header (RFC 8926 section 3.4), UDP port 6081:
  0                   1                   2                   3
  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |        Virtual Network Identifier (VNI)       |    Reserved   |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 |                    Variable-Length Options                    |
 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 Opt Len counts 4-octet words. Protocol Type is an EtherType (0x6558 = Ethernet).
*/

/// <summary>Fields of a Geneve base header.</summary>
public struct GeneveHeader
{
    public const int BaseLength = 8;
    public const ushort Port = 6081;

    public byte Version;
    /// <summary>Options length in bytes.</summary>
    public int OptionsLength;
    public bool Oam;
    public bool Critical;
    public ushort ProtocolType;
    public uint Vni;

    /// <summary>Base header plus options: where the inner packet starts.</summary>
    public readonly int HeaderLength => BaseLength + OptionsLength;

    /// <summary>Reads the base header; version must be 0 and the options must be present.</summary>
    public static ParseStatus TryRead(ReadOnlySpan<byte> udpPayload, out GeneveHeader header)
    {
        header = default;
        if (udpPayload.Length < BaseLength)
        {
            return ParseStatus.Truncated;
        }
        header.Version = (byte)(udpPayload[0] >> 6);
        if (header.Version != 0)
        {
            return ParseStatus.BadVersion;
        }
        header.OptionsLength = (udpPayload[0] & 0x3F) * 4;
        header.Oam = (udpPayload[1] & 0x80) != 0;
        header.Critical = (udpPayload[1] & 0x40) != 0;
        header.ProtocolType = BinaryPrimitives.ReadUInt16BigEndian(udpPayload.Slice(2));
        header.Vni = BinaryPrimitives.ReadUInt32BigEndian(udpPayload.Slice(4)) >> 8;
        if (header.HeaderLength > udpPayload.Length)
        {
            return ParseStatus.Truncated;
        }
        return ParseStatus.Ok;
    }

    /// <summary>Writes the base header (no options; OptionsLength must be 0 or the caller writes
    /// the options after it). Returns 8.</summary>
    public readonly int Write(Span<byte> destination)
    {
        if (OptionsLength % 4 != 0 || OptionsLength > 63 * 4 || Vni > 0xFFFFFF)
        {
            throw new ArgumentOutOfRangeException(nameof(OptionsLength));
        }
        if (destination.Length < BaseLength)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        destination[0] = (byte)(OptionsLength / 4);
        destination[1] = (byte)((Oam ? 0x80 : 0) | (Critical ? 0x40 : 0));
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(2), ProtocolType);
        BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(4), Vni << 8);
        return BaseLength;
    }
}

/// <summary>WireGuard message types (whitepaper section 5.4).</summary>
public enum WireGuardMessageType : byte
{
    None = 0,
    HandshakeInitiation = 1,
    HandshakeResponse = 2,
    CookieReply = 3,
    TransportData = 4,
}

/*
 WireGuard messages (whitepaper 5.4; all integers little-endian):
 Initiation, 148 octets:  type=1 | reserved(3)=0 | sender(4) | ephemeral(32) | static(32+16)
                          | timestamp(12+16) | mac1(16) | mac2(16)
 Response, 92 octets:     type=2 | reserved(3)=0 | sender(4) | receiver(4) | ephemeral(32)
                          | empty(0+16) | mac1(16) | mac2(16)
 Cookie reply, 64 octets: type=3 | reserved(3)=0 | receiver(4) | nonce(24) | cookie(16+16)
 Transport, >= 32 octets: type=4 | reserved(3)=0 | receiver(4) | counter(8) | packet(16k)+tag(16)
 The plaintext of a transport message is padded to a multiple of 16, so its length minus the
 16-octet header is a multiple of 16.
*/

/// <summary>Header fields of a WireGuard message.</summary>
public struct WireGuardHeader
{
    public const int InitiationLength = 148;
    public const int ResponseLength = 92;
    public const int CookieReplyLength = 64;
    public const int TransportHeaderLength = 16;
    public const int TransportMinLength = 32;

    public WireGuardMessageType MessageType;
    /// <summary>Sender index (initiation, response); 0 otherwise.</summary>
    public uint SenderIndex;
    /// <summary>Receiver index (response, cookie reply, transport); 0 otherwise.</summary>
    public uint ReceiverIndex;
    /// <summary>Nonce counter of a transport message; 0 otherwise.</summary>
    public ulong Counter;

    /// <summary>
    /// Recognises a WireGuard message by structure alone (any port): type 1..4, three zero
    /// reserved bytes, and the exact size of that type (148 / 92 / 64 / 32 + 16k).
    /// Anything else is <see cref="ParseStatus.NotWireGuard"/>.
    /// </summary>
    /// <param name="udpPayload">The UDP payload.</param>
    /// <param name="datagramLength">The payload length as sent, if larger than the bytes present
    /// (first fragment or truncated capture); pass -1 to use the span length.</param>
    public static ParseStatus TryRead(ReadOnlySpan<byte> udpPayload, out WireGuardHeader header, int datagramLength = -1)
    {
        header = default;
        int length = datagramLength < 0 ? udpPayload.Length : datagramLength;
        if (udpPayload.Length < 4 || length < udpPayload.Length)
        {
            return udpPayload.Length < 4 ? ParseStatus.Truncated : ParseStatus.NotWireGuard;
        }
        // Type is a little-endian u32 whose upper three bytes are reserved zero.
        uint typeWord = BinaryPrimitives.ReadUInt32LittleEndian(udpPayload);
        if (typeWord is 0 or > 4)
        {
            return ParseStatus.NotWireGuard;
        }
        var type = (WireGuardMessageType)typeWord;
        bool sizeOk = type switch
        {
            WireGuardMessageType.HandshakeInitiation => length == InitiationLength,
            WireGuardMessageType.HandshakeResponse => length == ResponseLength,
            WireGuardMessageType.CookieReply => length == CookieReplyLength,
            _ => length >= TransportMinLength && (length - TransportHeaderLength) % 16 == 0,
        };
        if (!sizeOk)
        {
            return ParseStatus.NotWireGuard;
        }
        header.MessageType = type;
        switch (type)
        {
            case WireGuardMessageType.HandshakeInitiation:
                if (udpPayload.Length < 8) return ParseStatus.Truncated;
                header.SenderIndex = BinaryPrimitives.ReadUInt32LittleEndian(udpPayload.Slice(4));
                break;
            case WireGuardMessageType.HandshakeResponse:
                if (udpPayload.Length < 12) return ParseStatus.Truncated;
                header.SenderIndex = BinaryPrimitives.ReadUInt32LittleEndian(udpPayload.Slice(4));
                header.ReceiverIndex = BinaryPrimitives.ReadUInt32LittleEndian(udpPayload.Slice(8));
                break;
            case WireGuardMessageType.CookieReply:
                if (udpPayload.Length < 8) return ParseStatus.Truncated;
                header.ReceiverIndex = BinaryPrimitives.ReadUInt32LittleEndian(udpPayload.Slice(4));
                break;
            default:
                if (udpPayload.Length < TransportHeaderLength) return ParseStatus.Truncated;
                header.ReceiverIndex = BinaryPrimitives.ReadUInt32LittleEndian(udpPayload.Slice(4));
                header.Counter = BinaryPrimitives.ReadUInt64LittleEndian(udpPayload.Slice(8));
                break;
        }
        return ParseStatus.Ok;
    }

    /// <summary>Writes the type word and the index/counter fields of this message type (the rest
    /// of the message is the tunnel's business). Returns the bytes written (8, 12, 8 or 16).</summary>
    public readonly int Write(Span<byte> destination)
    {
        int needed = MessageType switch
        {
            WireGuardMessageType.HandshakeInitiation => 8,
            WireGuardMessageType.HandshakeResponse => 12,
            WireGuardMessageType.CookieReply => 8,
            WireGuardMessageType.TransportData => TransportHeaderLength,
            _ => throw new ArgumentOutOfRangeException(nameof(MessageType)),
        };
        if (destination.Length < needed)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)MessageType);
        switch (MessageType)
        {
            case WireGuardMessageType.HandshakeInitiation:
                BinaryPrimitives.WriteUInt32LittleEndian(destination.Slice(4), SenderIndex);
                break;
            case WireGuardMessageType.HandshakeResponse:
                BinaryPrimitives.WriteUInt32LittleEndian(destination.Slice(4), SenderIndex);
                BinaryPrimitives.WriteUInt32LittleEndian(destination.Slice(8), ReceiverIndex);
                break;
            case WireGuardMessageType.CookieReply:
                BinaryPrimitives.WriteUInt32LittleEndian(destination.Slice(4), ReceiverIndex);
                break;
            default:
                BinaryPrimitives.WriteUInt32LittleEndian(destination.Slice(4), ReceiverIndex);
                BinaryPrimitives.WriteUInt64LittleEndian(destination.Slice(8), Counter);
                break;
        }
        return needed;
    }
}
