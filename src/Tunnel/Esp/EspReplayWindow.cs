namespace Gateway.Tunnel.Esp;

/// <summary>
/// The receive side of an ESP security association's sequence numbers: the anti-replay window
/// of RFC 4303 section 3.4.3 (1024 packets, as Cilium configures the kernel's xfrm states) and,
/// with extended sequence numbers, the inference of the 32 high-order bits that the packet does
/// not carry (RFC 4303 appendix A2).
/// <code>
///   T = highest authenticated sequence number, W = 1024
///   accepted:  T - W &lt; S  and  S not yet seen       (S &gt; T slides the window forward)
///   ring word i covers S in [64*k, 64*k+63] for k ≡ i (mod 32): 2048 bits, W of them in use
/// </code>
/// Checking is split from marking: <see cref="Check"/> runs before the ICV (so replays cost no
/// decryption), <see cref="TryAccept"/> after it, so a forged packet can never move the window.
/// Not thread-safe: the security association serializes access.
/// </summary>
public sealed class EspReplayWindow
{
    public const int WindowSize = 1024;
    private const int RingWords = 32; // 2048 bits: the window plus room so a slide never clears live bits

    private readonly ulong[] _ring = new ulong[RingWords];
    private ulong _top; // highest accepted sequence number; 0 = none yet (ESP sequence numbers start at 1)

    public EspReplayWindow(bool extendedSequenceNumbers) => ExtendedSequenceNumbers = extendedSequenceNumbers;

    public bool ExtendedSequenceNumbers { get; }

    /// <summary>The highest sequence number accepted so far (0 before the first packet).</summary>
    public ulong Top => _top;

    /// <summary>
    /// The full sequence number of a packet carrying <paramref name="low"/>: the low 32 bits
    /// themselves without ESN; with ESN the high half inferred from the window's position
    /// (RFC 4303 appendix A2.2). The guess may be wrong for a forged or very late packet; the
    /// ICV, which covers the high half, then fails.
    /// </summary>
    public ulong Infer(uint low)
    {
        if (!ExtendedSequenceNumbers) return low;
        uint tl = (uint)_top, th = (uint)(_top >> 32);
        uint bottom = unchecked(tl - WindowSize + 1);
        uint high;
        if (tl >= WindowSize - 1)
        {
            // Case A: the window lies within one 2^32 subspace.
            high = low >= bottom ? th : th + 1;
        }
        else
        {
            // Case B: the window spans two subspaces; a low number at or above the bottom
            // (mod 2^32) belongs to the previous one, if there is one.
            high = low >= bottom && th > 0 ? th - 1 : th;
        }
        return ((ulong)high << 32) | low;
    }

    /// <summary>True when <paramref name="sequence"/> is new and inside (or ahead of) the window.</summary>
    public bool Check(ulong sequence)
    {
        if (sequence == 0) return false; // never sent: the sender's counter starts at 1
        if (sequence > _top) return true;
        if (_top - sequence >= WindowSize) return false;
        return (Word(sequence) & Bit(sequence)) == 0;
    }

    /// <summary>Marks an authenticated <paramref name="sequence"/> seen, sliding the window when it
    /// is the newest; false when it is a replay or too old (checked again: another packet with the
    /// same number may have been accepted since <see cref="Check"/>).</summary>
    public bool TryAccept(ulong sequence)
    {
        if (!Check(sequence)) return false;
        if (sequence > _top)
        {
            ulong current = _top >> 6, target = sequence >> 6;
            ulong steps = Math.Min(target - current, (ulong)RingWords);
            for (ulong i = 1; i <= steps; i++)
                _ring[(int)((current + i) & (RingWords - 1))] = 0;
            _top = sequence;
        }
        Word(sequence) |= Bit(sequence);
        return true;
    }

    /// <summary>Puts the window at <paramref name="top"/> with nothing seen: for tests that start
    /// near the 2^32 boundaries, and for known-answer packets whose sequence numbers are far out.</summary>
    internal void ResetTo(ulong top)
    {
        Array.Clear(_ring);
        _top = top;
    }

    private ref ulong Word(ulong sequence) => ref _ring[(int)((sequence >> 6) & (RingWords - 1))];

    private static ulong Bit(ulong sequence) => 1UL << (int)(sequence & 63);
}
