using System.Buffers.Binary;

namespace Gateway.Tunnel;

/// <summary>WireGuard message types (first byte; the next three bytes are zero).</summary>
public enum MessageType : uint
{
    Invalid = 0,
    HandshakeInitiation = 1,
    HandshakeResponse = 2,
    CookieReply = 3,
    TransportData = 4,
}

/// <summary>
/// Wire layout of the four WireGuard messages (whitepaper 5.4). All integers little-endian.
/// <code>
/// Initiation (148 B)                 Response (92 B)
/// +0   type=1 (u8) + 3 zero          +0   type=2 + 3 zero
/// +4   sender index (u32)            +4   sender index
/// +8   unencrypted ephemeral (32)    +8   receiver index
/// +40  encrypted static (32+16)      +12  unencrypted ephemeral (32)
/// +88  encrypted timestamp (12+16)   +44  encrypted nothing (0+16)
/// +116 mac1 (16)                     +60  mac1 (16)
/// +132 mac2 (16)                     +76  mac2 (16)
///
/// Cookie reply (64 B)                Transport data (32 B + 16*n)
/// +0   type=3 + 3 zero               +0   type=4 + 3 zero
/// +4   receiver index                +4   receiver index
/// +8   nonce (24)                    +8   counter (u64)
/// +32  encrypted cookie (16+16)      +16  encrypted packet, padded to 16, + tag (16)
/// </code>
/// </summary>
public static class Messages
{
    public const int InitiationSize = 148;
    public const int ResponseSize = 92;
    public const int CookieReplySize = 64;
    public const int TransportHeaderSize = 16;
    public const int TagSize = 16;
    public const int KeepaliveSize = TransportHeaderSize + TagSize;
    public const int MinTransportSize = KeepaliveSize;
    /// <summary>Transport overhead: header + tag (padding comes on top).</summary>
    public const int TransportOverhead = TransportHeaderSize + TagSize;
    public const int PaddingMultiple = 16;
    public const int MacSize = 16;

    // Initiation offsets.
    internal const int InitSender = 4, InitEphemeral = 8, InitStatic = 40, InitTimestamp = 88, InitMac1 = 116, InitMac2 = 132;
    // Response offsets.
    internal const int RespSender = 4, RespReceiver = 8, RespEphemeral = 12, RespEmpty = 44, RespMac1 = 60, RespMac2 = 76;
    // Cookie reply offsets.
    internal const int CookieReceiver = 4, CookieNonce = 8, CookieEncrypted = 32;
    // Transport offsets.
    internal const int TransportReceiver = 4, TransportCounter = 8;

    /// <summary>
    /// Classifies a datagram by its 4-byte header and exact size; never throws, never reads past the span.
    /// Returns Invalid for anything that cannot be a WireGuard message.
    /// </summary>
    public static MessageType Classify(ReadOnlySpan<byte> datagram)
    {
        if (datagram.Length < 4) return MessageType.Invalid;
        uint header = BinaryPrimitives.ReadUInt32LittleEndian(datagram);
        switch (header)
        {
            case 1: return datagram.Length == InitiationSize ? MessageType.HandshakeInitiation : MessageType.Invalid;
            case 2: return datagram.Length == ResponseSize ? MessageType.HandshakeResponse : MessageType.Invalid;
            case 3: return datagram.Length == CookieReplySize ? MessageType.CookieReply : MessageType.Invalid;
            case 4:
                // Sealed plaintext is padded to 16, so a well-formed transport message is 32 + 16n bytes;
                // wireguard-go only enforces the minimum, so do the same to stay interoperable.
                return datagram.Length >= MinTransportSize ? MessageType.TransportData : MessageType.Invalid;
            default: return MessageType.Invalid;
        }
    }

    /// <summary>Bytes the plaintext occupies after padding to a multiple of 16, capped at <paramref name="mtuCap"/>.</summary>
    public static int PaddedLength(int plaintextLength, int mtuCap = int.MaxValue)
    {
        int padded = (plaintextLength + (PaddingMultiple - 1)) & ~(PaddingMultiple - 1);
        if (padded > mtuCap) padded = Math.Max(plaintextLength, mtuCap);
        return padded;
    }

    /// <summary>Datagram size for an IP packet of <paramref name="packetLength"/> bytes.</summary>
    public static int TransportSize(int packetLength) => TransportOverhead + PaddedLength(packetLength);
}
