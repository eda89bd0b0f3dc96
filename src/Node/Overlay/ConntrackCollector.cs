using Gateway.Node.Daemon;
using Gateway.Policy;

namespace Gateway.Node.Overlay;

/// <summary>
/// Frees expired conntrack entries on a timer, so that the table's <see cref="Conntrack.Count"/>
/// (the <c>gateway_conntrack_entries</c> gauge) counts live flows rather than every flow ever
/// seen, and so that expired entries stop taking probe slots from new ones. Lookups already
/// treat an expired entry as absent; this only returns its slot. Each tick visits the whole
/// table in 64-slot chunks (the table's own bound on how long a shard stays locked), so an
/// entry is freed at most one <see cref="Interval"/> after it expires.
/// </summary>
/// <remarks>Time comes from the injected clock, the same one the pipeline stamps entries with:
/// both the timer and the "now" it collects at. A failing pass is logged and the timer keeps
/// running.</remarks>
public sealed class ConntrackCollector : IDisposable
{
    /// <summary>Cilium's agent runs its conntrack GC at least every few seconds under load;
    /// one second keeps the gauge close to the truth at negligible cost.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(1);

    private readonly Conntrack _conntrack;
    private readonly TimeProvider _clock;
    private readonly ITimer _timer;
    private readonly Daemon.TickFailures _failures;
    private long _collected;
    private long _passes;

    public ConntrackCollector(Conntrack conntrack, TimeProvider clock, TimeSpan? interval = null, NodeLog? log = null)
    {
        _conntrack = conntrack ?? throw new ArgumentNullException(nameof(conntrack));
        _clock = clock ?? throw new ArgumentNullException(nameof(clock));
        _failures = new Daemon.TickFailures(log, "conntrack garbage collection");
        Interval = interval ?? DefaultInterval;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Interval, TimeSpan.Zero, nameof(interval));
        _timer = clock.CreateTimer(_ => Collect(), null, Interval, Interval);
    }

    public TimeSpan Interval { get; }

    /// <summary>Entries freed so far.</summary>
    public long Collected => Interlocked.Read(ref _collected);

    /// <summary>Completed passes over the table.</summary>
    public long Passes => Interlocked.Read(ref _passes);

    /// <summary>One pass over the whole table at the clock's current time (the timer's callback).</summary>
    public int Collect()
    {
        int freed = 0;
        lock (_failures)
        {
            // A failing pass is logged once (not every second) and the table stays as it was.
            _failures.Run(() =>
            {
                long nowNs = (long)(_clock.GetTimestamp() * (1_000_000_000.0 / _clock.TimestampFrequency));
                freed = _conntrack.Collect(nowNs, _conntrack.Capacity);
                Interlocked.Add(ref _collected, freed);
                Interlocked.Increment(ref _passes);
            });
        }
        return freed;
    }

    /// <summary>Passes that failed (each caught and logged; the next pass runs as usual).</summary>
    public long Failures
    {
        get
        {
            lock (_failures) return _failures.Count;
        }
    }

    public void Dispose() => _timer.Dispose();
}
