using Gateway.Datapath.Shaping;

namespace Gateway.Datapath.Tests;

/// <summary>EDT pacing (Cilium's edt.h), the one-second token bucket (Cilium's tb.h) and the
/// departure queue, on a clock the test moves: no sleeping.</summary>
public class ShapingTests
{
    private const long Second = 1_000_000_000;

    [Fact]
    public void EdtSpacesPacketsAtTheRateAndDropsBeyondTheHorizon()
    {
        var edt = new EdtSchedule(10_000_000); // 10 Mbit/s: 1250 bytes take 1 ms
        long now = 5 * Second;
        // An idle aggregate: the first packet leaves at once and the schedule restarts at now.
        Assert.Equal(EdtVerdict.Send, edt.Schedule(now, 1250, out long d0));
        Assert.Equal(now, d0);
        // A burst at the same instant: each waits one packet time more than the one before.
        for (int i = 1; i < 2000; i++)
        {
            Assert.Equal(EdtVerdict.Wait, edt.Schedule(now, 1250, out long d));
            Assert.Equal(now + i * 1_000_000L, d);
        }
        // t_last = now + 1.999 s; the next would be at now + 2 s: the horizon, dropped; t_last stays.
        Assert.Equal(EdtVerdict.Drop, edt.Schedule(now, 1250, out _));
        Assert.Equal(now + 1999 * 1_000_000L, edt.LastDepartureNs);
        // Half a second later there is room again.
        Assert.Equal(EdtVerdict.Wait, edt.Schedule(now + Second / 2, 1250, out long later));
        Assert.Equal(now + 2000 * 1_000_000L, later);
        // Long idle: no credit is earned, the next packet leaves now.
        Assert.Equal(EdtVerdict.Send, edt.Schedule(now + 10 * Second, 1250, out long idle));
        Assert.Equal(now + 10 * Second, idle);
    }

    [Fact]
    public void EdtKeepsTheExactRateOverManyPacketsWhoseTimesDoNotDivideEvenly()
    {
        var edt = new EdtSchedule(3_000_000); // 1001 bytes = 2.669333.. ms each
        long now = Second;
        edt.Schedule(now, 1001, out _);
        long last = 0;
        for (int i = 0; i < 600; i++)
        {
            edt.Schedule(now, 1001, out last);
        }
        // 600 packets × 1001 × 8 bits at 3 Mbit/s = 1.6016 s exactly (no drift from rounding).
        Assert.Equal(now + 1_601_600_000L, last);
    }

    [Fact]
    public void EdtRateChangeAppliesFromTheNextPacket()
    {
        var edt = new EdtSchedule(8_000_000); // 1000 bytes = 1 ms
        Assert.Equal(EdtVerdict.Send, edt.Schedule(Second, 1000, out _));
        edt.Schedule(Second, 1000, out long a);
        Assert.Equal(Second + 1_000_000, a);
        edt.BitsPerSecond = 80_000_000;
        edt.Schedule(Second, 1000, out long b);
        Assert.Equal(Second + 1_100_000, b);
    }

    [Fact]
    public void TokenBucketHoldsOneSecondStartsFullAndRefillsExactly()
    {
        var bucket = new TokenBucket(8_000_000); // 1 MB/s, depth 1 MB
        long now = 3 * Second;
        int passed = 0;
        for (int i = 0; i < 2000; i++)
        {
            passed += bucket.TryTake(now, 1000) ? 1 : 0;
        }
        Assert.Equal(1000, passed); // one second's worth, then empty
        Assert.False(bucket.TryTake(now, 1));
        // 1 ms refills 1000 bytes: one more packet.
        Assert.True(bucket.TryTake(now + 1_000_000, 1000));
        Assert.False(bucket.TryTake(now + 1_000_000, 1000));
        // Many tiny steps add up exactly (the division remainder is carried): 1000 × 1 µs = 1000 bytes.
        long t = now + 1_000_000;
        for (int i = 0; i < 1000; i++)
        {
            t += 1000;
            bucket.TryTake(t, 0);
        }
        Assert.True(bucket.TryTake(t, 1000));
        // Idle for longer than a second: full again, never more.
        Assert.Equal(999, Enumerable.Range(0, 1000).Count(_ => bucket.TryTake(t + 5 * Second, 1001)));
    }

    [Fact]
    public void DepartureQueueKeepsOrderWrapsAndRefusesWhatDoesNotFit()
    {
        var queue = new DepartureQueue(4096);
        var rng = new Random(7);
        var reference = new Queue<(long, byte[])>();
        var outBuf = new byte[2048];
        long t = 0;
        for (int step = 0; step < 20_000; step++)
        {
            if (rng.Next(3) != 0)
            {
                var packet = new byte[rng.Next(1, 1500)];
                rng.NextBytes(packet);
                long usedBefore = reference.Sum(r => (16 + r.Item2.Length + 7) & ~7);
                bool ok = queue.TryEnqueue(++t, packet);
                if (ok)
                {
                    reference.Enqueue((t, packet));
                }
                else
                {
                    // Refused only when it could not fit in the bytes left (minus wrap waste).
                    Assert.True(usedBefore + ((16 + packet.Length + 7) & ~7) > 4096 - 1500 - 16 || queue.Count > 0, "refused with room");
                }
            }
            else if (reference.Count > 0)
            {
                var (time, bytes) = reference.Dequeue();
                Assert.True(queue.TryPeek(out long d, out int len));
                Assert.Equal(time, d);
                Assert.Equal(bytes.Length, len);
                Assert.Equal(len, queue.Dequeue(outBuf));
                Assert.True(outBuf.AsSpan(0, len).SequenceEqual(bytes));
            }
            Assert.Equal(reference.Count, queue.Count);
            Assert.Equal(reference.Sum(r => (long)r.Item2.Length), queue.QueuedBytes);
        }
        Assert.False(queue.TryEnqueue(1, new byte[5000]));
    }

    [Fact]
    public void DepartureQueueFillsToItsCapacity()
    {
        var queue = new DepartureQueue(4096);
        int n = 0;
        while (queue.TryEnqueue(n, new byte[112]))
        {
            n++;
        }
        Assert.Equal(4096 / 128, n); // 16 header + 112 = 128 bytes a record, no waste
        Assert.Equal(112, queue.Dequeue(new byte[112]));
        Assert.True(queue.TryEnqueue(99, new byte[112])); // wraps into the freed record
        Assert.False(queue.TryEnqueue(100, new byte[1]));
    }

    [Fact]
    public void ShapingAllocatesNothingPerPacket()
    {
        var edt = new EdtSchedule(10_000_000);
        var bucket = new TokenBucket(10_000_000);
        var queue = new DepartureQueue(1 << 20);
        var packet = new byte[1400];
        var outBuf = new byte[1500];
        long now = Second;
        void Run()
        {
            for (int i = 0; i < 1000; i++)
            {
                now += 100_000;
                if (edt.Schedule(now, packet.Length, out long d) != EdtVerdict.Drop)
                {
                    queue.TryEnqueue(d, packet);
                }
                bucket.TryTake(now, packet.Length);
                if (queue.Count > 100 && queue.TryPeek(out _, out _))
                {
                    queue.Dequeue(outBuf);
                }
            }
        }
        Run();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Run();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        if (allocated != 0)
        {
            throw new InvalidOperationException($"shaping allocated {allocated} bytes for 1000 packets");
        }
    }
}
