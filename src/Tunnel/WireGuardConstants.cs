namespace Gateway.Tunnel;

/// <summary>
/// Protocol constants from the WireGuard whitepaper (section 6.1) and wireguard-go's
/// device/constants.go. Times are in nanoseconds because the engine's clock is a monotonic
/// nanosecond counter.
/// </summary>
public static class WireGuardConstants
{
    public const long Second = 1_000_000_000L;
    public const long Millisecond = 1_000_000L;

    public const ulong RekeyAfterMessages = 1UL << 60;
    /// <summary>2^64 - 2^13 - 1: wireguard-go's value; the replay window (8128) must fit under 2^64.</summary>
    public const ulong RejectAfterMessages = ulong.MaxValue - (1UL << 13);
    public const long RekeyAfterTime = 120 * Second;
    public const long RejectAfterTime = 180 * Second;
    public const long RekeyAttemptTime = 90 * Second;
    public const long RekeyTimeout = 5 * Second;
    /// <summary>Upper bound (exclusive) of the random jitter added to RekeyTimeout.</summary>
    public const long RekeyTimeoutJitterMax = 334 * Millisecond;
    public const long KeepaliveTimeout = 10 * Second;
    public const long CookieRefreshTime = 120 * Second;
    /// <summary>At most one initiation per peer is consumed in this interval (flood protection).</summary>
    public const long HandshakeInitiationRate = 20 * Millisecond;
    /// <summary>Retries until RekeyAttemptTime is reached: 90 s / 5 s = 18.</summary>
    public const int MaxTimerHandshakes = (int)(RekeyAttemptTime / RekeyTimeout);
    /// <summary>Once under load, stay there this long (wireguard-go UnderLoadAfterTime).</summary>
    public const long UnderLoadAfterTime = 1 * Second;
    /// <summary>Outgoing packets held per peer while a handshake is pending (wireguard-go QueueStagedSize).</summary>
    public const int MaxStagedPackets = 128;

    /// <summary>Per-source initiation rate limit when under load (wireguard-go ratelimiter.go).</summary>
    public const int InitiationsPerSecond = 20;
    public const int InitiationBurst = 5;
}
