using Etcdserverpb;
using static Gateway.Cluster.Tests.ClusterTestKit;

namespace Gateway.Cluster.Tests;

/// <summary>Identity garbage collection on a timer of the injected clock: a number whose last
/// user crashed is freed one interval later, a number in use never is. No sleeping for the
/// timer: the test clock fires it when moved; only etcd (an external process) is polled.</summary>
public sealed class IdentityGcTests
{
    private static readonly CancellationToken None = CancellationToken.None;

    [SkippableFact]
    public async Task TheTimerFreesANumberWhoseLastUserCrashed_AndKeepsOneInUse()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        await using var live = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        await live.RegisterNodeAsync(Node("node-live", 1), None);
        uint kept = await live.AllocateIdentityAsync("k8s:app=kept", None);

        // A node allocates a number, then crashes: its lease ends, taking its reference along,
        // and the master key (id -> labels) is left without users.
        var crashed = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        await crashed.RegisterNodeAsync(Node("node-crashed", 2), None);
        uint orphan = await crashed.AllocateIdentityAsync("k8s:app=gone", None);
        long lease = crashed.LeaseId;
        await crashed.DisposeAsync(); // no deregistration: as after a crash
        using var raw = Raw(etcd);
        await raw.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease });
        Assert.True(await Exists(raw, KvKeys.IdentityId(orphan)));

        var clock = new ManualClock();
        var log = new LogSink();
        await using var collector = await ClusterClient.ConnectAsync(etcd.Options(), log.Add, clock);
        collector.StartIdentityGarbageCollection(TimeSpan.FromMinutes(15));
        collector.StartIdentityGarbageCollection(TimeSpan.FromMinutes(15)); // idempotent: one timer
        Assert.Equal(1, clock.Timers);

        clock.Advance(TimeSpan.FromMinutes(15) - TimeSpan.FromSeconds(1));
        Assert.Equal(0, collector.IdentityGcRuns);
        Assert.True(await Exists(raw, KvKeys.IdentityId(orphan)));

        clock.Advance(TimeSpan.FromSeconds(1));
        WaitFor(() => collector.IdentityGcRuns == 1, "the first collection", TimeSpan.FromSeconds(30));
        // A run that failed (an etcd request timing out under load; logged) is retried at the next interval.
        for (long runs = 1; collector.IdentitiesCollected == 0 && runs < 5; runs++)
        {
            clock.Advance(TimeSpan.FromMinutes(15));
            long next = runs + 1;
            WaitFor(() => collector.IdentityGcRuns == next, "the next collection", TimeSpan.FromSeconds(30));
        }
        Assert.True(collector.IdentitiesCollected == 1, log.ToString());
        Assert.False(await Exists(raw, KvKeys.IdentityId(orphan)));
        Assert.True(await Exists(raw, KvKeys.IdentityId(kept)));
        Assert.Equal(1, log.Count("freed 1 identity number"));

        // The next interval runs again and finds nothing more to free.
        long before = collector.IdentityGcRuns;
        clock.Advance(TimeSpan.FromMinutes(15));
        WaitFor(() => collector.IdentityGcRuns == before + 1, "the next collection", TimeSpan.FromSeconds(30));
        Assert.True(await Exists(raw, KvKeys.IdentityId(kept)));
        Assert.Equal(1, collector.IdentitiesCollected);
    }

    private static async Task<bool> Exists(dotnet_etcd.EtcdClient raw, string key) => (await raw.GetAsync(key)).Count > 0;

    /// <summary>A clock whose timers fire, on the caller's thread, when <see cref="Advance"/> passes their due time.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private readonly List<Timer> _timers = [];
        private long _ticks;

        public int Timers => _timers.Count;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = new Timer(this, callback, state, dueTime, period);
            _timers.Add(timer);
            return timer;
        }

        public void Advance(TimeSpan by)
        {
            long end = _ticks + by.Ticks;
            while (_timers.Where(t => t.Due is long d && d <= end).MinBy(t => t.Due) is { } next)
            {
                _ticks = next.Due!.Value;
                next.Fire();
            }
            _ticks = end;
        }

        private sealed class Timer(ManualClock clock, TimerCallback callback, object? state, TimeSpan due, TimeSpan period) : ITimer
        {
            public long? Due = due == Timeout.InfiniteTimeSpan ? null : clock._ticks + due.Ticks;
            private long _period = period == Timeout.InfiniteTimeSpan ? 0 : period.Ticks;

            public void Fire()
            {
                Due = _period > 0 ? Due + _period : null;
                callback(state);
            }

            public bool Change(TimeSpan dueTime, TimeSpan period)
            {
                Due = dueTime == Timeout.InfiniteTimeSpan ? null : clock._ticks + dueTime.Ticks;
                _period = period == Timeout.InfiniteTimeSpan ? 0 : period.Ticks;
                return true;
            }

            public void Dispose() => Due = null;

            public ValueTask DisposeAsync()
            {
                Dispose();
                return ValueTask.CompletedTask;
            }
        }
    }
}
