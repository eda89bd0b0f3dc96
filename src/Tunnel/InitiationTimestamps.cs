using Gateway.Crypto;

namespace Gateway.Tunnel;

/// <summary>
/// The greatest TAI64N timestamp accepted in a handshake initiation, per public key, kept after
/// the peer is removed. Without it, removing and re-adding a peer (a `wg set ... remove` then
/// `wg set ... peer` or a config reload) would forget the timestamp and accept a replay of any
/// initiation captured earlier, which the whitepaper's timestamp check exists to prevent
/// (section 5.1). The engine remembers on removal and restores on re-creation.
/// Bounded: past <see cref="Capacity"/> removed keys the oldest remembered one is forgotten
/// (removals are operator actions, not something a remote party can drive).
/// </summary>
internal sealed class InitiationTimestamps
{
    public const int Capacity = 65536;

    private readonly Dictionary<PublicKey, byte[]> _byKey = [];
    private readonly Queue<PublicKey> _order = new();
    private readonly object _gate = new();

    /// <summary>Keeps <paramref name="timestamp"/> for <paramref name="key"/> if it is later than what is kept.</summary>
    public void Remember(PublicKey key, ReadOnlySpan<byte> timestamp)
    {
        if (timestamp.IndexOfAnyExcept((byte)0) < 0)
        {
            return; // never accepted an initiation
        }
        lock (_gate)
        {
            if (_byKey.TryGetValue(key, out byte[]? kept))
            {
                if (Tai64N.Compare(timestamp, kept) > 0)
                {
                    timestamp.CopyTo(kept);
                }
                return;
            }
            if (_byKey.Count >= Capacity)
            {
                _byKey.Remove(_order.Dequeue());
            }
            _byKey[key] = timestamp.ToArray();
            _order.Enqueue(key);
        }
    }

    /// <summary>Raises <paramref name="lastTimestamp"/> (a new peer's) to what was kept for its key.</summary>
    public void Restore(PublicKey key, Span<byte> lastTimestamp)
    {
        lock (_gate)
        {
            if (_byKey.TryGetValue(key, out byte[]? kept) && Tai64N.Compare(kept, lastTimestamp) > 0)
            {
                kept.CopyTo(lastTimestamp);
            }
        }
    }

    public int Count
    {
        get { lock (_gate) return _byKey.Count; }
    }
}
