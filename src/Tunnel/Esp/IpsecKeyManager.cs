namespace Gateway.Tunnel.Esp;

/// <summary>What a <see cref="IpsecKeyManager.Load"/> did.</summary>
public enum IpsecKeyLoadOutcome
{
    /// <summary>The first key was loaded.</summary>
    Loaded,
    /// <summary>The file holds the key already in use: nothing changed.</summary>
    Unchanged,
    /// <summary>A new key id became current; the previous one is retiring.</summary>
    Rotated,
}

/// <summary>
/// The node's IPsec keys over time, as Cilium's agent keeps them: the current key (the last
/// line of the keys file) is used to send; a key replaced by a new key id keeps being accepted on
/// receive for <see cref="RotationDuration"/> (Cilium's <c>--ipsec-key-rotation-duration</c>,
/// default 5 minutes) and is then removed. Rules from Cilium's LoadIPSecKeys: a new key needs a
/// new key id, and the key length may not change; a file breaking them is refused and the keys
/// in use stay. Reading an unchanged file again changes nothing, so the file can be polled.
/// Time comes from the injected clock. Thread-safe; readers get immutable snapshots.
/// </summary>
public sealed class IpsecKeyManager
{
    public static readonly TimeSpan DefaultRotationDuration = TimeSpan.FromMinutes(5);

    private readonly TimeProvider _clock;
    private readonly Lock _lock = new();
    private IpsecKeySet _keys = IpsecKeySet.Empty;

    public IpsecKeyManager(TimeProvider clock, TimeSpan rotationDuration)
    {
        if (rotationDuration < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(rotationDuration), "The rotation duration cannot be negative.");
        _clock = clock;
        RotationDuration = rotationDuration;
    }

    public TimeSpan RotationDuration { get; }

    /// <summary>The keys now: the current one and those still retiring. Changes produce a new
    /// snapshot with a higher <see cref="IpsecKeySet.Version"/>.</summary>
    public IpsecKeySet Keys => Volatile.Read(ref _keys);

    /// <summary>Loads the keys file text. Throws <see cref="IpsecKeyException"/> (and keeps the
    /// keys in use) for a malformed file, a key id reused with a different key, or a changed key
    /// length.</summary>
    public IpsecKeyLoadOutcome Load(string text)
    {
        IReadOnlyList<IpsecKey> parsed = IpsecKeyFile.Parse(text);
        lock (_lock)
        {
            IpsecKeySet keys = _keys;
            IpsecKeyLoadOutcome outcome = keys.Current is null ? IpsecKeyLoadOutcome.Loaded : IpsecKeyLoadOutcome.Unchanged;
            long now = _clock.GetTimestamp();
            var retiring = new List<RetiringKey>(keys.Retiring);
            IpsecKey? current = keys.Current;
            foreach (IpsecKey key in parsed)
            {
                if (current is not null)
                {
                    if (key.SameAs(current)) continue;
                    if (key.Spi == current.Spi)
                        throw new IpsecKeyException($"IPsec key id {key.Spi} is already in use with a different key; a new key needs a new key id (1..{IpsecKeyFile.MaxKeyId}, rolling over)");
                    if (key.KeyLength != current.KeyLength)
                        throw new IpsecKeyException($"IPsec key rotation refused: the key length may not change ({current.KeyLength * 8}-bit in use, {key.KeyLength * 8}-bit in the file)");
                    if (retiring.Exists(r => r.Key.Spi == key.Spi))
                        throw new IpsecKeyException($"IPsec key id {key.Spi} is still being retired; wait {RotationDuration.TotalSeconds:0} s after a rotation or use another key id");
                    retiring.Add(new RetiringKey(current, now));
                    outcome = IpsecKeyLoadOutcome.Rotated;
                }
                current = key;
            }
            if (outcome != IpsecKeyLoadOutcome.Unchanged)
                Volatile.Write(ref _keys, new IpsecKeySet(keys.Version + 1, current, retiring, now));
            return outcome;
        }
    }

    /// <summary>
    /// True once half the rotation duration has passed since the current key was loaded. Until
    /// then a node keeps sending to a peer with the previous key unless that peer has already
    /// sent with the new one (<see cref="EspTunnel"/>), so nodes that load the new file up to half
    /// the duration apart lose no packet: each still accepts the previous key when the other switches.
    /// </summary>
    public bool CurrentKeySettled
    {
        get
        {
            IpsecKeySet keys = Keys;
            return keys.Retiring.Count == 0 || _clock.GetElapsedTime(keys.CurrentSinceTimestamp) >= RotationDuration / 2;
        }
    }

    /// <summary>Removes retiring keys whose overlap has run out; returns how many were removed.
    /// Call it periodically (the daemon's timer) and after loading.</summary>
    public int RemoveExpired()
    {
        lock (_lock)
        {
            IpsecKeySet keys = _keys;
            // Monotonic time: a wall-clock step neither cuts the overlap short nor stretches it.
            var kept = keys.Retiring.Where(r => _clock.GetElapsedTime(r.RetiredAtTimestamp) < RotationDuration).ToList();
            int removed = keys.Retiring.Count - kept.Count;
            if (removed > 0)
                Volatile.Write(ref _keys, new IpsecKeySet(keys.Version + 1, keys.Current, kept, keys.CurrentSinceTimestamp));
            return removed;
        }
    }
}

/// <summary>A key replaced by a newer key id, still accepted on receive for the rotation duration
/// after <paramref name="RetiredAtTimestamp"/> (the clock's monotonic timestamp).</summary>
public sealed record RetiringKey(IpsecKey Key, long RetiredAtTimestamp);

/// <summary>An immutable snapshot of the node's IPsec keys.</summary>
public sealed class IpsecKeySet
{
    public static readonly IpsecKeySet Empty = new(0, null, [], 0);

    public IpsecKeySet(long version, IpsecKey? current, IReadOnlyList<RetiringKey> retiring, long currentSinceTimestamp)
    {
        Version = version;
        Current = current;
        Retiring = retiring;
        CurrentSinceTimestamp = currentSinceTimestamp;
    }

    /// <summary>When the current key was loaded (the clock's monotonic timestamp).</summary>
    public long CurrentSinceTimestamp { get; }

    /// <summary>The key most recently replaced by the current one, while it is still accepted.</summary>
    public IpsecKey? Previous => Retiring.Count == 0 ? null : Retiring[^1].Key;

    /// <summary>Rises by one on every change.</summary>
    public long Version { get; }

    /// <summary>The key to send with (null before any key is loaded).</summary>
    public IpsecKey? Current { get; }

    public IReadOnlyList<RetiringKey> Retiring { get; }

    /// <summary>All keys accepted on receive: the current one, then the retiring ones.</summary>
    public IEnumerable<IpsecKey> Accepted =>
        Current is null ? Retiring.Select(r => r.Key) : Retiring.Select(r => r.Key).Prepend(Current);

    /// <summary>Number of keys in use (what the <c>gateway_ipsec_keys</c> gauge shows).</summary>
    public int Count => (Current is null ? 0 : 1) + Retiring.Count;
}
