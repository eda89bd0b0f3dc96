namespace Gateway.Tunnel.Noise;

/// <summary>
/// Token bucket per source address, in the manner of wireguard-go's ratelimiter: 20 handshake
/// messages per second with a burst of 5. Tokens are counted in nanoseconds of "credit"; one
/// message costs 1 s / 20. Entries idle for more than a second are swept.
/// </summary>
internal sealed class InitiationRateLimiter
{
    private const long PacketCost = WireGuardConstants.Second / WireGuardConstants.InitiationsPerSecond;
    private const long MaxTokens = PacketCost * WireGuardConstants.InitiationBurst;
    private const long GarbageCollectInterval = WireGuardConstants.Second;

    private sealed class Bucket
    {
        public long Tokens;
        public long LastTime;
    }

    private readonly Dictionary<Gateway.Datapath.IpAddress, Bucket> _buckets = new();
    private long _lastSweep;

    public int Count => _buckets.Count;

    public bool Allow(Gateway.Datapath.IpAddress source, long now)
    {
        if (now - _lastSweep > GarbageCollectInterval) Sweep(now);
        if (!_buckets.TryGetValue(source, out var bucket))
        {
            // A new source starts with a full bucket minus this message.
            _buckets[source] = new Bucket { Tokens = MaxTokens - PacketCost, LastTime = now };
            return true;
        }
        bucket.Tokens += now - bucket.LastTime;
        bucket.LastTime = now;
        if (bucket.Tokens > MaxTokens) bucket.Tokens = MaxTokens;
        if (bucket.Tokens >= PacketCost)
        {
            bucket.Tokens -= PacketCost;
            return true;
        }
        return false;
    }

    private void Sweep(long now)
    {
        _lastSweep = now;
        List<Gateway.Datapath.IpAddress>? stale = null;
        foreach (var (address, bucket) in _buckets)
            if (now - bucket.LastTime > GarbageCollectInterval) (stale ??= new()).Add(address);
        if (stale is not null) foreach (var a in stale) _buckets.Remove(a);
    }
}
