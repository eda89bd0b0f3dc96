using Gateway.Datapath;

namespace Gateway.Tunnel;

/// <summary>What the caller must do with the result of one engine call.</summary>
public enum TunnelAction : byte
{
    /// <summary>Nothing more to do (handshake message handled, keepalive, packet staged...).</summary>
    None,
    /// <summary>Send bytes [Offset, Offset+Length) of the buffer to <see cref="TunnelResult.Endpoint"/>.</summary>
    SendToNetwork,
    /// <summary>Write bytes [Offset, Offset+Length) of the buffer (an IP packet) to the TUN device.</summary>
    DeliverToTun,
    /// <summary>The input was dropped; <see cref="TunnelResult.Reason"/> says why.</summary>
    Drop,
}

/// <summary>Why an input ended the way it did. Drops and notable non-drops share one counter space.</summary>
public enum TunnelEvent : byte
{
    None,
    // Non-drop outcomes.
    TransportSent,
    TransportDelivered,
    KeepaliveReceived,
    PacketStaged,
    InitiationProcessed,
    ResponseProcessed,
    CookieReplyProcessed,
    CookieReplySent,
    // Outbound drops.
    NotIpPacket,
    NoRoute,
    NoEndpoint,
    BufferTooSmall,
    NoPrivateKey,
    /// <summary>The queue of packets waiting for a handshake was full; its oldest packet was dropped.</summary>
    StagedOverflow,
    // Inbound drops.
    InvalidMessage,
    BadMac1,
    RateLimited,
    HandshakeFailed,
    StaleOrReplayedInitiation,
    InitiationFlood,
    UnknownIndex,
    UnexpectedResponse,
    CookieReplyInvalid,
    KeypairExpired,
    AuthenticationFailed,
    Replayed,
    InnerPacketInvalid,
    InnerSourceNotAllowed,
    /// <summary>Outbound: a packet from TUN that is our own datagram to the peer's endpoint, routed
    /// back into the tunnel (see <see cref="InnerPacket.IsDatagramFromPortTo"/>).</summary>
    RoutingLoop,
    /// <summary>Inbound, under load: a handshake message without a valid cookie from an address that
    /// already had its cookie replies for now (20 a second, burst 5); dropped without a reply.</summary>
    CookieReplyRateLimited,
    Count,
}

/// <summary>The outcome of <see cref="WireGuardEngine"/> data-path calls. A value type: no allocation.</summary>
public readonly struct TunnelResult
{
    public TunnelResult(TunnelAction action, TunnelEvent reason, int offset, int length, IpEndpoint endpoint, Peer? peer)
    {
        Action = action;
        Reason = reason;
        Offset = offset;
        Length = length;
        Endpoint = endpoint;
        Peer = peer;
    }

    public TunnelAction Action { get; }
    public TunnelEvent Reason { get; }
    public int Offset { get; }
    public int Length { get; }
    public IpEndpoint Endpoint { get; }
    public Peer? Peer { get; }

    internal static TunnelResult Dropped(TunnelEvent reason, Peer? peer = null) => new(TunnelAction.Drop, reason, 0, 0, default, peer);
    internal static TunnelResult Done(TunnelEvent reason, Peer? peer = null) => new(TunnelAction.None, reason, 0, 0, default, peer);

    public override string ToString() => $"{Action} {Reason} [{Offset}+{Length}] {(Endpoint.IsSet() ? Endpoint.ToString() : "-")}";
}

/// <summary>
/// Where the engine emits datagrams that are not the direct answer to a call: handshake messages,
/// cookie replies, keepalives, and staged packets flushed when a handshake completes. The engine
/// calls it synchronously, possibly while holding a peer lock: implementations must copy or send
/// the bytes before returning and must not call back into the engine.
/// </summary>
public interface ITunnelOutput
{
    void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram);
}

/// <summary>A seal begun by <see cref="WireGuardEngine.BeginEncapsulateInPlace(Span{byte}, int, out SealTicket)"/> and not yet
/// completed: the session and the counter the packet was given. A value type: no allocation.</summary>
public readonly struct SealTicket
{
    internal SealTicket(Keypair keypair, ulong counter, int packetLength, int padded)
    {
        Keypair = keypair;
        Counter = counter;
        PacketLength = packetLength;
        Padded = padded;
    }

    internal Keypair? Keypair { get; }
    internal ulong Counter { get; }
    internal int PacketLength { get; }
    internal int Padded { get; }

    /// <summary>True when <see cref="WireGuardEngine.CompleteEncapsulate"/> must still run.</summary>
    public bool IsPending => Keypair is not null;
}

/// <summary>A transport message authenticated and decrypted by
/// <see cref="WireGuardEngine.BeginDecapsulate"/> whose in-order bookkeeping is still to be done.</summary>
public readonly struct OpenTicket
{
    internal OpenTicket(Keypair keypair, ulong counter, long now)
    {
        Keypair = keypair;
        Counter = counter;
        Now = now;
    }

    internal Keypair? Keypair { get; }
    internal ulong Counter { get; }

    /// <summary>The engine clock reading (<see cref="WireGuardEngine.ReadClock"/>) the datagram was
    /// opened at: the rest of its handling (timers, conntrack) runs at that time, so the clock is read
    /// once per received batch.</summary>
    public long Now { get; }

    /// <summary>True when <see cref="WireGuardEngine.CompleteDecapsulate"/> must still run.</summary>
    public bool IsPending => Keypair is not null;
}
