using Gateway.Datapath;
using Gateway.Tunnel.Noise;

namespace Gateway.Tunnel;

/// <summary>
/// A remote WireGuard peer: its static key, optional preshared key, endpoint, allowed IPs,
/// handshake, keypairs (previous/current/next), timers and transfer counters. Created and
/// removed through <see cref="WireGuardEngine"/>; all mutable state is guarded by <see cref="Sync"/>.
/// </summary>
public sealed class Peer
{
    internal const long Disarmed = long.MaxValue;

    internal Peer(WireGuardEngine engine, PublicKey publicKey)
    {
        Engine = engine;
        PublicKey = publicKey;
        Span<byte> key = stackalloc byte[32];
        publicKey.CopyTo(key);
        Handshake = new Handshake(key) { Random = engine.RandomSource };
        Cookies = new CookieGenerator(key);
    }

    internal WireGuardEngine Engine { get; }
    internal readonly Lock Sync = new();
    internal readonly Handshake Handshake;
    internal readonly CookieGenerator Cookies;
    internal Keypair? Previous, Current, Next;
    internal readonly StagedQueue Staged = new();
    internal readonly List<IpPrefix> AllowedIpList = new();
    internal bool Removed;
    internal long Sequence; // creation order, for stable UAPI listings

    // Timers (whitepaper 6; wireguard-go device/timers.go): absolute monotonic deadlines in ns,
    // Disarmed when not pending. Fired by WireGuardEngine.Tick.
    internal long RetransmitHandshakeAt = Disarmed;
    internal long SendKeepaliveAt = Disarmed;
    internal long NewHandshakeAt = Disarmed;
    internal long ZeroKeyMaterialAt = Disarmed;
    internal long PersistentKeepaliveAt = Disarmed;
    internal int HandshakeAttempts;
    internal bool NeedAnotherKeepalive;
    internal bool SentLastMinuteHandshake;

    internal IpEndpoint EndpointValue;
    internal ushort PersistentKeepaliveValue;
    internal long TxBytesValue, RxBytesValue;
    internal long LastHandshakeUnixNanos;
    internal bool HasPresharedKey;

    public PublicKey PublicKey { get; }

    public IpEndpoint Endpoint { get { lock (Sync) return EndpointValue; } }
    public ushort PersistentKeepaliveInterval { get { lock (Sync) return PersistentKeepaliveValue; } }
    /// <summary>Bytes of WireGuard datagrams sent to this peer (handshake and transport; as wireguard-go counts).</summary>
    public long TxBytes => Interlocked.Read(ref TxBytesValue);
    /// <summary>Bytes of authenticated WireGuard datagrams received from this peer.</summary>
    public long RxBytes => Interlocked.Read(ref RxBytesValue);
    /// <summary>Wall-clock time of the last completed handshake, or null.</summary>
    public DateTimeOffset? LastHandshake
    {
        get
        {
            long ns = Interlocked.Read(ref LastHandshakeUnixNanos);
            return ns == 0 ? null : DateTimeOffset.UnixEpoch.AddTicks(ns / 100);
        }
    }

    public IReadOnlyList<IpPrefix> AllowedIps { get { lock (Sync) return AllowedIpList.ToArray(); } }

    /// <summary>True while a current keypair can send.</summary>
    public bool HasSession { get { lock (Sync) return Current is { } kp && kp.CanSend(Engine.Now); } }

    // Test/diagnostic views of the keypair slots.
    internal uint CurrentLocalIndex { get { lock (Sync) return Current?.LocalIndex ?? 0; } }
    internal uint NextLocalIndex { get { lock (Sync) return Next?.LocalIndex ?? 0; } }
    internal uint PreviousLocalIndex { get { lock (Sync) return Previous?.LocalIndex ?? 0; } }
    internal int StagedCount { get { lock (Sync) return Staged.Count; } }

    public override string ToString() => $"peer({PublicKey.ToBase64()[..8]}…)";
}
