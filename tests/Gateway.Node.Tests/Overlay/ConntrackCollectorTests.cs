using Gateway.Datapath;
using Gateway.Node.Overlay;
using Gateway.Policy;

namespace Gateway.Node.Tests.Overlay;

/// <summary>The daemon's conntrack garbage collection: driven by the injected clock's timer, it
/// frees expired entries so the entry gauge counts live flows. No sleeping: the test clock fires
/// its timers when moved.</summary>
public sealed class ConntrackCollectorTests
{
    /// <summary>A monotonic clock in nanoseconds whose timers fire when <see cref="Advance"/> passes their due time.</summary>
    private sealed class TimerClock : TimeProvider
    {
        private readonly List<ManualTimer> _timers = [];
        public long Nanos { get; private set; } = 5_000_000_000_000;

        public override long TimestampFrequency => 1_000_000_000;
        public override long GetTimestamp() => Broken ? throw new InvalidOperationException("the clock is broken") : Nanos;

        /// <summary>While true, reading the time throws (a stage of the collector failing).</summary>
        public bool Broken { get; set; }

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = new ManualTimer(this, callback, state, dueTime, period);
            _timers.Add(timer);
            return timer;
        }

        public void Advance(TimeSpan by)
        {
            long end = Nanos + by.Ticks * 100;
            while (true)
            {
                var next = _timers.Where(t => t.DueNs is long d && d <= end).MinBy(t => t.DueNs);
                if (next is null)
                {
                    break;
                }
                Nanos = next.DueNs!.Value;
                next.Fire();
            }
            Nanos = end;
        }

        public int ActiveTimers => _timers.Count(t => t.DueNs is not null);

        private sealed class ManualTimer(TimerClock clock, TimerCallback callback, object? state, TimeSpan due, TimeSpan period) : ITimer
        {
            public long? DueNs = due == Timeout.InfiniteTimeSpan ? null : clock.Nanos + due.Ticks * 100;
            private long _periodNs = period == Timeout.InfiniteTimeSpan ? 0 : period.Ticks * 100;

            public void Fire()
            {
                DueNs = _periodNs > 0 ? DueNs + _periodNs : null;
                callback(state);
            }

            public bool Change(TimeSpan dueTime, TimeSpan period)
            {
                DueNs = dueTime == Timeout.InfiniteTimeSpan ? null : clock.Nanos + dueTime.Ticks * 100;
                _periodNs = period == Timeout.InfiniteTimeSpan ? 0 : period.Ticks * 100;
                return true;
            }

            public void Dispose() => DueNs = null;
            public ValueTask DisposeAsync()
            {
                Dispose();
                return ValueTask.CompletedTask;
            }
        }
    }

    private static FlowKey Udp(int i) => new()
    {
        Source = IpAddress.FromV4(0x0A0B0100u + (uint)(i % 200)), Destination = IpAddress.Parse("10.11.2.10"),
        Protocol = IpProtocol.Udp, SourcePort = (ushort)(10000 + i), DestinationPort = 53,
    };

    [Fact]
    public void Expired_entries_are_freed_by_the_timer_and_live_ones_stay()
    {
        var clock = new TimerClock();
        var conntrack = new Conntrack(4096, new ConntrackTimeouts { Udp = TimeSpan.FromSeconds(60) });
        using var collector = new ConntrackCollector(conntrack, clock);
        for (int i = 0; i < 500; i++)
        {
            conntrack.Create(Udp(i), clock.Nanos);
        }
        Assert.Equal(500, conntrack.Count);

        // 59 s on: nothing has expired, the timer ran 59 times and freed nothing.
        clock.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(59, collector.Passes);
        Assert.Equal(500, conntrack.Count);

        // 100 flows are still active (a packet refreshes them); the other 400 expire at 60 s.
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal(CtResult.Established, conntrack.Lookup(Udp(i), clock.Nanos));
        }
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(100, conntrack.Count);
        Assert.Equal(400, collector.Collected);

        clock.Advance(TimeSpan.FromSeconds(60));
        Assert.Equal(0, conntrack.Count);
        Assert.Equal(500, collector.Collected);
    }

    [Fact]
    public void Without_the_collector_the_gauge_counts_flows_long_over()
    {
        // The reason the collector exists: lookups of other keys never free these entries.
        var clock = new TimerClock();
        var conntrack = new Conntrack(4096);
        for (int i = 0; i < 50; i++)
        {
            conntrack.Create(Udp(i), clock.Nanos);
        }
        clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal(50, conntrack.Count);
        using var collector = new ConntrackCollector(conntrack, clock, TimeSpan.FromSeconds(5));
        clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(0, conntrack.Count);
    }

    [Fact]
    public void A_failing_pass_is_logged_once_keeps_the_table_and_the_next_pass_runs()
    {
        var clock = new TimerClock();
        var conntrack = new Conntrack(4096, new ConntrackTimeouts { Udp = TimeSpan.FromSeconds(60) });
        var log = new StringWriter();
        using var collector = new ConntrackCollector(conntrack, clock, log: new Gateway.Node.Daemon.NodeLog(log));
        for (int i = 0; i < 50; i++)
        {
            conntrack.Create(Udp(i), clock.Nanos);
        }
        clock.Broken = true;
        clock.Advance(TimeSpan.FromSeconds(120)); // 120 passes, every one fails
        Assert.Equal(120, collector.Failures);
        Assert.Equal(50, conntrack.Count);
        var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("conntrack garbage collection: tick failed (InvalidOperationException: the clock is broken)", lines[0]);

        clock.Broken = false;
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, conntrack.Count);
        Assert.Equal(50, collector.Collected);
    }

    [Fact]
    public void Disposing_stops_the_timer()
    {
        var clock = new TimerClock();
        var collector = new ConntrackCollector(new Conntrack(1024), clock);
        Assert.Equal(1, clock.ActiveTimers);
        collector.Dispose();
        Assert.Equal(0, clock.ActiveTimers);
        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(0, collector.Passes);
    }
}
