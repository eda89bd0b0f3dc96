namespace Gateway.Crypto;

/// <summary>
/// Produces strictly increasing TAI64N stamps from an injected clock. A responder rejects an
/// initiation whose timestamp is not greater than the last one it accepted from us, so two
/// initiations in the same clock tick (or after the clock stepped back) must still differ.
/// </summary>
/// <remarks>
/// Like wireguard-go, the nanoseconds are rounded down to a multiple of 2^24 ns (~16.8 ms) so
/// the stamp does not expose the sender's precise clock; when that would not be greater than
/// the previous stamp, the previous stamp plus one nanosecond is used instead.
/// </remarks>
public sealed class Tai64NGenerator
{
    internal const uint WhitenerMask = (1u << 24) - 1;
    private const uint NanosPerSecond = 1_000_000_000;

    private readonly TimeProvider _clock;
    private readonly Lock _lock = new();
    private ulong _lastLabel;
    private uint _lastNanos;
    private bool _any;

    public Tai64NGenerator(TimeProvider clock)
    {
        ArgumentNullException.ThrowIfNull(clock);
        _clock = clock;
    }

    public void Next(Span<byte> destination12)
    {
        if (destination12.Length != Tai64N.Size)
        {
            throw new ArgumentException($"A TAI64N timestamp is {Tai64N.Size} bytes.", nameof(destination12));
        }

        Span<byte> now = stackalloc byte[Tai64N.Size];
        Tai64N.Write(_clock.GetUtcNow(), now);
        ulong label = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(now);
        uint nanos = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(now.Slice(8)) & ~WhitenerMask;

        lock (_lock)
        {
            if (_any && (label < _lastLabel || (label == _lastLabel && nanos <= _lastNanos)))
            {
                label = _lastLabel;
                nanos = _lastNanos + 1;
                if (nanos >= NanosPerSecond)
                {
                    label++;
                    nanos = 0;
                }
            }
            _lastLabel = label;
            _lastNanos = nanos;
            _any = true;
        }
        Tai64N.WriteCore(label, nanos, destination12);
    }
}
