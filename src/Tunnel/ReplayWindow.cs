namespace Gateway.Tunnel;

/// <summary>
/// Sliding anti-replay window of RFC 6479 as used by WireGuard: a ring of 128 64-bit words
/// (8192 bits) of which one word is always being recycled, so 8128 counters behind the highest
/// one are tracked. The check is done after the packet authenticated, so a forged counter can
/// never advance the window.
/// <code>
///   ring word i covers counters [64*k, 64*k+63] for k ≡ i (mod 128)
///   newest ----------------+
///   [w0][w1]...[wN]...[w127]  words between old and new top are zeroed when the window slides
/// </code>
/// Not thread-safe: the keypair's owner serializes access.
/// </summary>
public sealed class ReplayWindow
{
    public const int RingWords = 128;
    public const int BitsTotal = RingWords * 64;         // 8192
    public const int WindowSize = BitsTotal - 64;        // 8128

    private readonly ulong[] _ring = new ulong[RingWords];
    // Highest accepted counter plus one (0 = nothing accepted yet), as in the kernel's counter.
    private ulong _next;

    /// <summary>Highest counter accepted so far plus one.</summary>
    public ulong Next => _next;

    public void Reset()
    {
        Array.Clear(_ring);
        _next = 0;
    }

    /// <summary>True when <paramref name="counter"/> is fresh (and marks it seen); false when it is
    /// a replay, too old, or at/after <see cref="WireGuardConstants.RejectAfterMessages"/>.</summary>
    public bool TryAccept(ulong counter)
    {
        if (_next >= WireGuardConstants.RejectAfterMessages + 1 || counter >= WireGuardConstants.RejectAfterMessages)
            return false;
        ulong c = counter + 1; // shift by one so that counter 0 is distinguishable from "nothing yet"
        if (c + WindowSize < _next)
            return false; // behind the window
        ulong index = c >> 6;
        if (c > _next)
        {
            ulong current = _next >> 6;
            ulong steps = Math.Min(index - current, (ulong)RingWords);
            for (ulong i = 1; i <= steps; i++)
                _ring[(int)((current + i) & (RingWords - 1))] = 0;
            _next = c;
        }
        ref ulong word = ref _ring[(int)(index & (RingWords - 1))];
        ulong bit = 1UL << (int)(c & 63);
        if ((word & bit) != 0) return false;
        word |= bit;
        return true;
    }
}
