using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Gateway.Crypto;

namespace Gateway.Tunnel.Esp;

/// <summary>
/// One direction of an IPsec ESP security association with AES-GCM (RFC 4303 + RFC 4106),
/// sealing and opening packets in place. An outbound SA owns the sequence counter, an inbound SA
/// the replay window; both hold the key, imported once.
/// <code>
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               Security Parameters Index (SPI)                 |  AAD: SPI, then
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  [seq high 32 (ESN)],
/// |                 Sequence Number (low 32 bits)                 |  seq low 32
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |              Initialization Vector (8 bytes)                  |  here: the 64-bit seq
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  ---
/// ~      Payload: the inner IP packet (tunnel mode)               ~   |
/// +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   | encrypted
/// |               |  Padding 1, 2, 3... (0-255 bytes)             |   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   |
/// |                               |  Pad Length   | Next Header   |  ---
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~           Integrity Check Value (12 or 16 bytes)              ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// </code>
/// The IV is the sequence number (RFC 4106 section 3.1 allows any unique value; the counter is
/// unique for the key's life because it never wraps, which is what makes GCM safe here).
/// Padding only aligns the trailer to 4 bytes (RFC 4303 section 2.4); GCM needs no block padding.
/// Thread-safe: sequence numbers are taken atomically; the AEAD and the window run under a
/// per-SA lock (.NET's <see cref="System.Security.Cryptography.AesGcm"/> instance is not safe for
/// concurrent calls).
/// </summary>
[SkipLocalsInit]
public sealed class EspSecurityAssociation : IDisposable
{
    public const int HeaderSize = 8, IvSize = AesGcmKey.IvSize;
    /// <summary>Bytes needed in front of the inner packet: ESP header and IV.</summary>
    public const int Headroom = HeaderSize + IvSize;
    /// <summary>Bytes needed behind the inner packet at most: padding (≤ 3), pad length, next header, ICV (≤ 16).</summary>
    public const int MaxTailroom = 3 + 2 + AesGcmKey.TagSize;
    public const byte NextHeaderIpv4 = 4, NextHeaderIpv6 = 41;
    /// <summary>IP protocol number of ESP.</summary>
    public const byte IpProtocolEsp = 50;

    private readonly AesGcmKey _key;
    private readonly EspReplayWindow _window;
    private readonly Lock _lock = new();
    private readonly ulong _sequenceLimit;
    private bool _disposed;
    private ulong _lastSequence; // last sequence number handed out (outbound)

    /// <param name="spi">The SPI (Cilium: the key id 1..15).</param>
    /// <param name="keyAndSalt">AES key followed by the 4-byte salt (20, 28 or 36 bytes).</param>
    /// <param name="icvBits">96 or 128.</param>
    /// <param name="extendedSequenceNumbers">64-bit sequence numbers (Cilium turns them on).</param>
    public EspSecurityAssociation(uint spi, ReadOnlySpan<byte> keyAndSalt, int icvBits, bool extendedSequenceNumbers = true)
    {
        if (spi == 0)
            throw new ArgumentException("SPI 0 is reserved (RFC 4303 section 2.1).", nameof(spi));
        if (icvBits is not (96 or 128))
            throw new ArgumentException($"The ICV is 96 or 128 bits, not {icvBits}.", nameof(icvBits));
        Spi = spi;
        IcvSize = icvBits / 8;
        ExtendedSequenceNumbers = extendedSequenceNumbers;
        _key = new AesGcmKey(keyAndSalt, IcvSize);
        _window = new EspReplayWindow(extendedSequenceNumbers);
        _sequenceLimit = extendedSequenceNumbers ? ulong.MaxValue : uint.MaxValue;
    }

    public uint Spi { get; }
    public int IcvSize { get; }
    public bool ExtendedSequenceNumbers { get; }

    /// <summary>The AES key length in bytes (16 for rfc4106(gcm(aes)) with a 20-byte key).</summary>
    public int KeySize => _key.KeySize;

    /// <summary>Last sequence number sent (0 before the first packet).</summary>
    public ulong LastSequence => Volatile.Read(ref _lastSequence);

    /// <summary>Highest sequence number received and authenticated.</summary>
    public ulong HighestReceived
    {
        get { lock (_lock) return _window.Top; }
    }

    /// <summary>Bytes added around an inner packet of <paramref name="innerLength"/> bytes.</summary>
    public int Overhead(int innerLength) => Headroom + PadLength(innerLength) + 2 + IcvSize;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int PadLength(int innerLength) => (4 - ((innerLength + 2) & 3)) & 3;

    /// <summary>
    /// Seals the inner packet at buffer[offset .. offset+length) in place: the ESP header and IV
    /// go into the <see cref="Headroom"/> bytes before it, trailer and ICV after it. On success the
    /// result's Offset/Length give the ESP packet (offset - 16 ..).
    /// </summary>
    public EspResult Seal(Span<byte> buffer, int offset, int length, byte nextHeader)
    {
        if (offset < Headroom || length < 0 || (uint)offset + (uint)length > (uint)buffer.Length)
            return EspResult.Fail(EspStatus.BufferTooSmall);
        int pad = PadLength(length);
        int encrypted = length + pad + 2;
        if (buffer.Length - offset < encrypted + IcvSize)
            return EspResult.Fail(EspStatus.BufferTooSmall);
        if (!TryNextSequence(out ulong sequence))
            return EspResult.Fail(EspStatus.SequenceExhausted);
        if (!SealCore(buffer.Slice(offset - Headroom, Headroom + encrypted + IcvSize), sequence, length, pad, nextHeader, iv: default))
            return EspResult.Fail(EspStatus.NoOutboundState);
        return new EspResult(EspStatus.Ok, offset - Headroom, Headroom + encrypted + IcvSize, nextHeader, sequence);
    }

    /// <summary>Seal with a chosen sequence number and IV: only for known-answer tests, whose
    /// published packets use IVs unrelated to the sequence number.</summary>
    internal bool SealForTest(Span<byte> packet, ulong sequence, int length, byte nextHeader, ReadOnlySpan<byte> iv, int pad)
        => SealCore(packet, sequence, length, pad, nextHeader, iv);

    private bool SealCore(Span<byte> packet, ulong sequence, int length, int pad, byte nextHeader, ReadOnlySpan<byte> iv)
    {
        BinaryPrimitives.WriteUInt32BigEndian(packet, Spi);
        BinaryPrimitives.WriteUInt32BigEndian(packet[4..], (uint)sequence);
        Span<byte> ivField = packet.Slice(HeaderSize, IvSize);
        if (iv.IsEmpty) BinaryPrimitives.WriteUInt64BigEndian(ivField, sequence);
        else iv.CopyTo(ivField);
        Span<byte> trailer = packet.Slice(Headroom + length, pad + 2);
        for (int i = 0; i < pad; i++) trailer[i] = (byte)(i + 1); // RFC 4303 2.4: 1, 2, 3, ...
        trailer[pad] = (byte)pad;
        trailer[pad + 1] = nextHeader;
        int encrypted = length + pad + 2;
        Span<byte> aad = stackalloc byte[12];
        int aadLength = WriteAad(aad, sequence);
        Span<byte> payload = packet.Slice(Headroom, encrypted);
        lock (_lock)
        {
            if (_disposed) return false; // replaced by a key rotation while this packet was on its way
            _key.Seal(ivField, payload, aad[..aadLength], payload, packet.Slice(Headroom + encrypted, IcvSize));
        }
        return true;
    }

    private bool TryNextSequence(out ulong sequence)
    {
        // Compare-and-swap instead of Interlocked.Increment: the counter must stop at its limit,
        // never step past it, even with many threads sealing at once.
        ulong current = Volatile.Read(ref _lastSequence);
        while (true)
        {
            // The brief's rule: refuse to send the limit itself (2^64-1 with ESN, 2^32-1 without).
            if (current + 1 >= _sequenceLimit)
            {
                sequence = 0;
                return false;
            }
            ulong seen = Interlocked.CompareExchange(ref _lastSequence, current + 1, current);
            if (seen == current)
            {
                sequence = current + 1;
                return true;
            }
            current = seen;
        }
    }

    /// <summary>Puts the outbound counter at <paramref name="lastSequence"/>: for tests of the
    /// limit, and for known-answer packets.</summary>
    internal void SetLastSequence(ulong lastSequence) => Volatile.Write(ref _lastSequence, lastSequence);

    /// <summary>Puts the replay window's top at <paramref name="top"/> (tests only).</summary>
    internal void SetReceiveTop(ulong top)
    {
        lock (_lock) _window.ResetTo(top);
    }

    private int WriteAad(Span<byte> aad, ulong sequence)
    {
        // RFC 4106 section 5: SPI || 32-bit seq, or SPI || 64-bit extended seq.
        BinaryPrimitives.WriteUInt32BigEndian(aad, Spi);
        if (ExtendedSequenceNumbers)
        {
            BinaryPrimitives.WriteUInt64BigEndian(aad[4..], sequence);
            return 12;
        }
        BinaryPrimitives.WriteUInt32BigEndian(aad[4..], (uint)sequence);
        return 8;
    }

    /// <summary>Reads the SPI of an ESP packet; false when it is too short to have one.</summary>
    public static bool TryReadSpi(ReadOnlySpan<byte> espPacket, out uint spi)
    {
        if (espPacket.Length < HeaderSize)
        {
            spi = 0;
            return false;
        }
        spi = BinaryPrimitives.ReadUInt32BigEndian(espPacket);
        return true;
    }

    /// <summary>
    /// Opens the ESP packet at packet[0 ..) in place (the caller looked up this SA by its SPI):
    /// replay check, ICV, window update, padding check. On success the result's Offset/Length give
    /// the payload inside <paramref name="packet"/> and NextHeader its type. Never throws on
    /// malformed input.
    /// </summary>
    public EspResult Open(Span<byte> packet)
    {
        // Header, IV, at least pad length + next header, ICV; the encrypted part is 4-aligned.
        int encrypted = packet.Length - Headroom - IcvSize;
        if (encrypted < 2)
            return EspResult.Fail(EspStatus.Short);
        uint spi = BinaryPrimitives.ReadUInt32BigEndian(packet);
        if (spi != Spi)
            return EspResult.Fail(EspStatus.UnknownSpi);
        uint low = BinaryPrimitives.ReadUInt32BigEndian(packet[4..]);
        Span<byte> payload = packet.Slice(Headroom, encrypted);
        Span<byte> aad = stackalloc byte[12];
        ulong sequence;
        lock (_lock)
        {
            if (_disposed)
                return EspResult.Fail(EspStatus.UnknownSpi);
            sequence = _window.Infer(low);
            if (!_window.Check(sequence))
                return EspResult.Fail(EspStatus.Replay, sequence);
            int aadLength = WriteAad(aad, sequence);
            if (!_key.Open(packet.Slice(HeaderSize, IvSize), payload, packet.Slice(Headroom + encrypted, IcvSize), aad[..aadLength], payload))
                return EspResult.Fail(EspStatus.AuthenticationFailed, sequence);
            if (!_window.TryAccept(sequence))
                return EspResult.Fail(EspStatus.Replay, sequence);
        }
        byte nextHeader = payload[^1];
        int pad = payload[^2];
        int innerLength = encrypted - 2 - pad;
        if (innerLength < 0)
            return EspResult.Fail(EspStatus.BadPadding, sequence);
        ReadOnlySpan<byte> padding = payload.Slice(innerLength, pad);
        for (int i = 0; i < padding.Length; i++)
        {
            if (padding[i] != (byte)(i + 1))
                return EspResult.Fail(EspStatus.BadPadding, sequence);
        }
        return new EspResult(EspStatus.Ok, Headroom, innerLength, nextHeader, sequence);
    }

    /// <summary>Frees the key (its context is cleared) and forgets the salt.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _key.Dispose();
        }
    }
}
