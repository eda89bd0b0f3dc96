namespace Gateway.Datapath.Shaping;

/// <summary>What <see cref="EdtSchedule.Schedule"/> decided for one packet.</summary>
public enum EdtVerdict : byte
{
    /// <summary>Within the rate: may leave now.</summary>
    Send,
    /// <summary>Must wait until the departure time it was given.</summary>
    Wait,
    /// <summary>Its departure time lies beyond the horizon: drop it (Cilium's DROP_EDT_HORIZON).</summary>
    Drop,
}

/// <summary>
/// Earliest departure time pacing for one aggregate (a pod), as Cilium's bpf/lib/edt.h does it:
/// a packet of L bytes takes L×8/rate seconds of the link; its departure time is
/// t_next = t_last + delay. If t_next is not in the future the packet leaves now and the clock
/// restarts at now (an idle aggregate earns no credit); if t_next lies a horizon (2 s) or more
/// beyond now the packet is dropped and t_last stays; otherwise it leaves at t_next. Unlike the
/// kernel's fq qdisc, which holds Cilium's stamped packets, the caller holds them (see
/// <see cref="DepartureQueue"/>). Time is whatever clock the caller reads, in nanoseconds; the
/// remainder of the division is carried, so a long run keeps the exact rate. No allocation.
/// Thread-safety: one caller at a time (the rate may be changed from any thread).
/// </summary>
public sealed class EdtSchedule
{
    /// <summary>Cilium's default drop horizon (bandwidth manager: 2 s).</summary>
    public const long DefaultHorizonNs = 2_000_000_000;

    private const long NsPerSecond = 1_000_000_000;
    private long _bitsPerSecond;
    private long _tLast;
    private long _remainder; // of (bytes × 8 × 1e9) / rate, carried between packets

    public EdtSchedule(long bitsPerSecond, long horizonNs = DefaultHorizonNs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(horizonNs, 1);
        BitsPerSecond = bitsPerSecond;
        HorizonNs = horizonNs;
    }

    /// <summary>The rate; a change applies from the next packet and keeps the schedule's position.</summary>
    public long BitsPerSecond
    {
        get => Volatile.Read(ref _bitsPerSecond);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            Volatile.Write(ref _bitsPerSecond, value);
        }
    }

    public long HorizonNs { get; }

    /// <summary>The departure time of the last packet scheduled (t_last).</summary>
    public long LastDepartureNs => _tLast;

    /// <summary>
    /// Schedules a packet of <paramref name="wireLength"/> bytes at time <paramref name="nowNs"/>:
    /// <see cref="EdtVerdict.Send"/> (departure = now), <see cref="EdtVerdict.Wait"/> (departure in
    /// the future, within the horizon) or <see cref="EdtVerdict.Drop"/>.
    /// </summary>
    public EdtVerdict Schedule(long nowNs, int wireLength, out long departureNs)
    {
        long rate = Volatile.Read(ref _bitsPerSecond);
        // wire_len × 8 × 1e9 fits 64 bits for any packet (≤ 64 KiB: 5.2e14).
        long numerator = (long)wireLength * 8 * NsPerSecond + _remainder;
        long delay = numerator / rate;
        long remainder = numerator - delay * rate;
        long tNext = _tLast + delay;
        if (tNext <= nowNs)
        {
            // Idle long enough: leave now, and the schedule restarts from now without credit.
            _tLast = nowNs;
            _remainder = 0;
            departureNs = nowNs;
            return EdtVerdict.Send;
        }
        if (tNext - nowNs >= HorizonNs)
        {
            departureNs = 0;
            return EdtVerdict.Drop;
        }
        _tLast = tNext;
        _remainder = remainder;
        departureNs = tNext;
        return EdtVerdict.Wait;
    }
}
