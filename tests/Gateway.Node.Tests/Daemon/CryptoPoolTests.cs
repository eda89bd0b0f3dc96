using System.Collections.Concurrent;
using Gateway.Node.Daemon;

namespace Gateway.Node.Tests.Daemon;

public class CryptoPoolTests
{
    private sealed class Batch
    {
        public long Id;
        public int ProcessedBy;
        public int Work;
    }

    private static Batch[] Ring(int capacity) => Enumerable.Range(0, capacity).Select(_ => new Batch()).ToArray();

    // Busy work of varying length instead of sleeping: batches finish out of order.
    private static int Spin(int iterations)
    {
        int x = 0;
        for (int i = 0; i < iterations; i++) x = x * 31 + i;
        return x;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void Each_stage_finishes_its_batches_in_publication_order(int workers)
    {
        var failures = new ConcurrentQueue<string>();
        using var pool = new CryptoPool(workers, failures.Enqueue);
        const int perStage = 3000;
        var finishedA = new List<long>();
        var finishedB = new List<long>();
        int processed = 0;
        var random = new ThreadLocal<Random>(() => new Random(Environment.CurrentManagedThreadId));
        void Process(Batch b)
        {
            b.Work = Spin(random.Value!.Next(0, 20_000));
            b.ProcessedBy = Environment.CurrentManagedThreadId;
            Interlocked.Increment(ref processed);
        }
        var a = pool.AddStage(Ring(4), Process, b => finishedA.Add(b.Id));
        var b = pool.AddStage(Ring(4), Process, b => finishedB.Add(b.Id));
        pool.Start("test-crypto");

        void Produce(OrderedStage<Batch> stage)
        {
            for (long id = 0; id < perStage; id++)
            {
                var batch = stage.TryAcquire(wait: true)!;
                batch.Id = id;
                stage.Publish(batch);
            }
        }
        var producerA = new Thread(() => Produce(a));
        var producerB = new Thread(() => Produce(b));
        producerA.Start();
        producerB.Start();
        producerA.Join();
        producerB.Join();
        // Drain: once a full ring can be acquired without waiting, everything before it finished.
        while (a.InFlight > 0 || b.InFlight > 0) Thread.Yield();

        Assert.Empty(failures);
        Assert.Equal(2 * perStage, processed);
        Assert.Equal(Enumerable.Range(0, perStage).Select(i => (long)i), finishedA);
        Assert.Equal(Enumerable.Range(0, perStage).Select(i => (long)i), finishedB);
    }

    [Fact]
    public void A_full_ring_refuses_or_waits_and_counts_the_wait()
    {
        var failures = new ConcurrentQueue<string>();
        using var pool = new CryptoPool(1, failures.Enqueue);
        using var gate = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        var finished = new ConcurrentQueue<long>();
        var stage = pool.AddStage(Ring(2), batch =>
        {
            if (Thread.CurrentThread.Name?.StartsWith("test-crypto", StringComparison.Ordinal) == true)
            {
                entered.Release();
                gate.Wait(); // the only worker is held: nothing finishes
            }
        }, batch => finished.Enqueue(batch.Id));
        pool.Start("test-crypto");

        var first = stage.TryAcquire(wait: false)!;
        first.Id = 0;
        stage.Publish(first);
        Assert.True(entered.Wait(TimeSpan.FromSeconds(10)), "the worker did not take the first batch");
        var second = stage.TryAcquire(wait: false)!;
        second.Id = 1;
        stage.Publish(second);
        Assert.Equal(2, stage.InFlight);
        Assert.Null(stage.TryAcquire(wait: false)); // full: a reader that must not block drops and counts
        Assert.Equal(0, stage.FullWaits);

        Batch? third = null;
        var waiter = new Thread(() => third = stage.TryAcquire(wait: true));
        waiter.Start();
        while (stage.FullWaits == 0) Thread.Yield();
        Assert.True(waiter.IsAlive); // still waiting for room
        gate.Set();
        Assert.True(waiter.Join(TimeSpan.FromSeconds(10)));
        Assert.NotNull(third);
        Assert.Equal(1, stage.FullWaits);
        while (stage.InFlight > 0) Thread.Yield();
        Assert.Equal([0L, 1L], finished.ToArray());
        Assert.Empty(failures);
    }

    [Fact]
    public void Without_workers_the_publisher_runs_both_steps_at_once()
    {
        using var pool = new CryptoPool(0, _ => { });
        var steps = new List<string>();
        var stage = pool.AddStage(Ring(1), b => steps.Add($"process {b.Id} on {Environment.CurrentManagedThreadId}"),
            b => steps.Add($"finish {b.Id} on {Environment.CurrentManagedThreadId}"));
        pool.Start("unused");
        for (int i = 0; i < 3; i++)
        {
            var batch = stage.TryAcquire(wait: false)!;
            batch.Id = i;
            stage.Publish(batch);
        }
        int me = Environment.CurrentManagedThreadId;
        Assert.Equal(Enumerable.Range(0, 3).SelectMany(i => new[] { $"process {i} on {me}", $"finish {i} on {me}" }), steps);
    }

    [Fact]
    public void A_failing_step_is_reported_instead_of_stalling_silently()
    {
        var failures = new ConcurrentQueue<string>();
        using var pool = new CryptoPool(1, failures.Enqueue);
        var stage = pool.AddStage(Ring(2), _ => throw new InvalidOperationException("bug"), _ => { });
        pool.Start("test-crypto");
        var batch = stage.TryAcquire(wait: false)!;
        stage.Publish(batch);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (failures.IsEmpty && watch.Elapsed < TimeSpan.FromSeconds(10)) Thread.Yield();
        Assert.Contains(failures, f => f.Contains("bug", StringComparison.Ordinal));
    }

    private static long PublishMany(OrderedStage<Batch> stage, int count)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < count; i++) stage.Publish(stage.TryAcquire(wait: true)!);
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void Handing_batches_over_allocates_nothing_on_any_thread()
    {
        var failures = new ConcurrentQueue<string>();
        using var pool = new CryptoPool(2, failures.Enqueue);
        // Each worker thread notes its allocation counter every time it enters the process step;
        // the difference between its first and last note is everything the pool's loop allocated.
        // Preallocated, indexed by managed thread id: taking a note allocates nothing.
        var firstSeen = new long[4096];
        var lastSeen = new long[4096];
        Array.Fill(firstSeen, -1);
        Array.Fill(lastSeen, -1);
        var stage = pool.AddStage(Ring(8), batch =>
        {
            batch.Work = Spin(200);
            // Only worker threads take notes: the producer also runs this step when it helps, and
            // a note of its own would be an allocation inside its measured loop.
            if (Thread.CurrentThread.Name?.StartsWith("test-crypto", StringComparison.Ordinal) != true) return;
            long now = GC.GetAllocatedBytesForCurrentThread();
            int thread = Environment.CurrentManagedThreadId;
            if (firstSeen[thread] < 0) firstSeen[thread] = now;
            else lastSeen[thread] = now;
        }, _ => { });
        pool.Start("test-crypto");
        PublishMany(stage, 20_000); // warm-up: first notes, one-time set-up and JIT of the measuring method
        while (stage.InFlight > 0) Thread.Yield();
        Array.Fill(firstSeen, -1);
        Array.Fill(lastSeen, -1);
        long producer = PublishMany(stage, 20_000);
        while (stage.InFlight > 0) Thread.Yield();
        // A worker's first note may be taken with a dictionary entry of its own being added.
        Assert.Equal(0, producer);
        int measured = 0;
        for (int thread = 0; thread < lastSeen.Length; thread++)
        {
            if (lastSeen[thread] < 0) continue;
            measured++;
            Assert.True(lastSeen[thread] == firstSeen[thread], $"worker thread {thread} allocated {lastSeen[thread] - firstSeen[thread]} bytes over its batches");
        }
        Assert.True(measured > 0, "no worker thread processed two batches");
        Assert.Empty(failures);
    }
}
