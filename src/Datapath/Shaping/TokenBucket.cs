namespace Gateway.Datapath.Shaping;

/// <summary>
/// A token bucket one second deep, as Cilium's ingress bandwidth limit (bpf/lib/tb.h accept()):
/// tokens are bytes, refilled at the rate for the time elapsed since the last packet and capped
/// at one second's worth; a packet passes if the bucket holds its length (which is then taken)
/// and is dropped otherwise. The bucket starts full. The remainder of the refill division is
/// carried, so many small refills add up to the exact rate. Time is the caller's clock in
/// nanoseconds. No allocation; one caller at a time (the rate may be changed from any thread).
/// </summary>
public sealed class TokenBucket
{
    private const long NsPerSecond = 1_000_000_000;
    private long _bitsPerSecond;
    private long _tokens;          // bytes
    private long _remainder;       // of (bits/s × elapsed ns) / (8 × 1e9)
    private long _tLast;
    private bool _started;

    public TokenBucket(long bitsPerSecond)
    {
        BitsPerSecond = bitsPerSecond;
        _tokens = Depth;
    }

    public long BitsPerSecond
    {
        get => Volatile.Read(ref _bitsPerSecond);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 8);
            Volatile.Write(ref _bitsPerSecond, value);
        }
    }

    /// <summary>The bucket's size: one second at the rate, in bytes.</summary>
    public long Depth => BitsPerSecond / 8;

    /// <summary>Bytes in the bucket after the last packet.</summary>
    public long Tokens => _tokens;

    /// <summary>True if a packet of <paramref name="wireLength"/> bytes may pass at <paramref name="nowNs"/>.</summary>
    public bool TryTake(long nowNs, int wireLength)
    {
        long rate = Volatile.Read(ref _bitsPerSecond);
        long depth = rate / 8;
        if (!_started)
        {
            _started = true;
            _tLast = nowNs;
        }
        long elapsed = nowNs - _tLast;
        if (elapsed > 0)
        {
            if (elapsed >= NsPerSecond)
            {
                _tokens = depth;
                _remainder = 0;
            }
            else
            {
                // rate × elapsed may pass 64 bits (1 Pbit/s × 1 s); 128-bit arithmetic allocates nothing.
                Int128 product = (Int128)rate * elapsed + _remainder;
                Int128 divisor = 8 * NsPerSecond;
                Int128 added = product / divisor;
                _remainder = (long)(product - added * divisor);
                _tokens = (long)Int128.Min(_tokens + added, depth);
                if (_tokens == depth)
                {
                    _remainder = 0;
                }
            }
            _tLast = nowNs;
        }
        if (_tokens >= wireLength)
        {
            _tokens -= wireLength;
            return true;
        }
        return false;
    }
}
