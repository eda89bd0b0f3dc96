namespace Gateway.Tunnel.Esp;

/// <summary>What happened to one packet given to an ESP security association. Everything but
/// <see cref="Ok"/> is a drop, counted under its own reason.</summary>
public enum EspStatus : byte
{
    Ok,
    // Receive side.
    /// <summary>Shorter than an ESP header, IV, minimal trailer (pad length, next header) and ICV.
    /// The 4-byte alignment senders keep is not enforced, as the Linux kernel does not enforce it for GCM.</summary>
    Short,
    /// <summary>No security association for the packet's SPI (and sender): the kernel's XfrmInNoStates.</summary>
    UnknownSpi,
    /// <summary>Sequence number already seen, or behind the 1024-packet window.</summary>
    Replay,
    /// <summary>The ICV did not verify: wrong key, forged or corrupted packet.</summary>
    AuthenticationFailed,
    /// <summary>Authenticated, but the pad length runs past the payload or the padding is not 1, 2, 3...</summary>
    BadPadding,
    /// <summary>Authenticated, but the next header is not an IP packet (4 or 41) as tunnel mode requires,
    /// or the inner packet's version does not match it.</summary>
    NotTunnelPayload,
    // Send side.
    /// <summary>The buffer lacks headroom for the ESP header and IV or tailroom for the trailer and ICV.</summary>
    BufferTooSmall,
    /// <summary>The sequence number would reach its limit (2^64 - 1 with ESN, 2^32 - 1 without): the
    /// SA must be replaced by a new key; sending more would reuse a GCM nonce.</summary>
    SequenceExhausted,
    /// <summary>No outbound security association (no key loaded, or no SA for that peer).</summary>
    NoOutboundState,
    Count,
}

/// <summary>The outcome of a seal or open: where the result lies in the caller's buffer. A value type.</summary>
public readonly struct EspResult
{
    public EspResult(EspStatus status, int offset, int length, byte nextHeader, ulong sequence)
    {
        Status = status;
        Offset = offset;
        Length = length;
        NextHeader = nextHeader;
        Sequence = sequence;
    }

    public EspStatus Status { get; }

    /// <summary>Seal: where the ESP packet starts; open: where the inner packet starts.</summary>
    public int Offset { get; }
    public int Length { get; }

    /// <summary>Open: the ESP next header of the payload (4 = IPv4, 41 = IPv6 in tunnel mode).</summary>
    public byte NextHeader { get; }

    /// <summary>The packet's full (64-bit with ESN) sequence number, when known.</summary>
    public ulong Sequence { get; }

    public bool IsOk => Status == EspStatus.Ok;

    internal static EspResult Fail(EspStatus status, ulong sequence = 0) => new(status, 0, 0, 0, sequence);

    public override string ToString() => $"{Status} [{Offset}+{Length}] nh={NextHeader} seq={Sequence}";
}
