using System.Diagnostics;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Gateway.Datapath;

namespace Gateway.Datapath.Tests;

public class LpmTableTests
{
    private static IpPrefix? LinearLongest(List<IpPrefix> prefixes, IpAddress address)
    {
        IpPrefix? best = null;
        foreach (var p in prefixes)
        {
            if (p.Contains(address) && (best is null || p.Length > best.Value.Length))
            {
                best = p;
            }
        }
        return best;
    }

    // Addresses drawn from a few clustered bases, so random prefixes overlap and nest often.
    private static IpAddress RandomAddress(System.Random rng, bool v6)
    {
        if (v6)
        {
            UInt128 hi = 0xfd00_0000_0000_0000UL | (ulong)(uint)rng.Next(4) << 40 | (uint)rng.Next(1 << 16);
            return IpAddress.FromV6(hi << 64 | (UInt128)(ulong)rng.NextInt64());
        }
        uint baseAddr = (uint)rng.Next(4) << 24 | 0x0A000000u;
        return IpAddress.FromV4(baseAddr | (uint)rng.Next(1 << 20));
    }

    [Property(MaxTest = 200)]
    public void AgreesWithLinearScan(int seed)
    {
        var rng = new System.Random(seed);
        var table = new LpmTable<IpPrefix>();
        var reference = new List<IpPrefix>();
        int operations = rng.Next(1, 120);
        for (int i = 0; i < operations; i++)
        {
            bool v6 = rng.Next(3) == 0;
            var prefix = new IpPrefix(RandomAddress(rng, v6), rng.Next(0, v6 ? 129 : 33));
            if (rng.Next(4) == 0 && reference.Count > 0)
            {
                var victim = reference[rng.Next(reference.Count)];
                Assert.True(table.Remove(victim));
                reference.Remove(victim);
                Assert.False(table.Remove(victim));
            }
            else
            {
                table.Set(prefix, prefix);
                if (!reference.Contains(prefix))
                {
                    reference.Add(prefix);
                }
            }
        }
        Assert.Equal(reference.Count, table.Count);
        Assert.Equal(reference.Count, table.Entries.Count());
        foreach (var p in reference)
        {
            Assert.True(table.TryGetExact(p, out var stored));
            Assert.Equal(p, stored);
            // The prefix's own address must resolve to it or to something longer that contains it.
            Assert.True(table.TryLookup(p.Address, out var hit));
            Assert.True(hit.Length >= p.Length);
        }
        for (int i = 0; i < 200; i++)
        {
            var address = RandomAddress(rng, rng.Next(3) == 0);
            var expected = LinearLongest(reference, address);
            bool found = table.TryLookup(address, out var matched, out var value);
            Assert.Equal(expected.HasValue, found);
            if (found)
            {
                Assert.Equal(expected!.Value, matched);
                Assert.Equal(matched, value);
            }
        }
    }

    [Fact]
    public void ReplacesValueAndRemovesWhere()
    {
        var t = new LpmTable<string>();
        t.Set(IpPrefix.Parse("10.0.0.0/8"), "a");
        t.Set(IpPrefix.Parse("10.1.0.0/16"), "b");
        t.Set(IpPrefix.Parse("10.0.0.0/8"), "c");
        Assert.Equal(2, t.Count);
        Assert.True(t.TryLookup(IpAddress.Parse("10.2.0.1"), out var v));
        Assert.Equal("c", v);
        Assert.True(t.TryLookup(IpAddress.Parse("10.1.0.1"), out v));
        Assert.Equal("b", v);
        Assert.False(t.TryLookup(IpAddress.Parse("11.0.0.1"), out _));
        Assert.False(t.TryLookup(IpAddress.Parse("fd00::1"), out _));
        Assert.Equal(1, t.RemoveWhere((_, value) => value == "b"));
        Assert.True(t.TryLookup(IpAddress.Parse("10.1.0.1"), out v));
        Assert.Equal("c", v);
        Assert.False(t.TryGetExact(IpPrefix.Parse("10.1.0.0/16"), out _));
        t.Clear();
        Assert.Equal(0, t.Count);
        Assert.False(t.TryLookup(IpAddress.Parse("10.2.0.1"), out _));
    }

    [Fact]
    public void LooksUpRawBytes()
    {
        var t = new LpmTable<int>();
        t.Set(IpPrefix.Parse("192.168.0.0/16"), 1);
        t.Set(IpPrefix.Parse("::/0"), 2);
        Assert.True(t.TryLookup(new byte[] { 192, 168, 3, 4 }, out int v));
        Assert.Equal(1, v);
        Assert.True(t.TryLookup(new byte[16], out v));
        Assert.Equal(2, v);
        Assert.False(t.TryLookup(new byte[5], out _));
    }

    [Fact]
    public void HundredThousandPrefixesInsertQuicklyAndLookupsAllocateNothing()
    {
        var rng = new System.Random(7);
        var prefixes = new IpPrefix[100_000];
        for (int i = 0; i < prefixes.Length; i++)
        {
            prefixes[i] = i % 4 == 0
                ? new IpPrefix(IpAddress.FromV6((UInt128)(ulong)rng.NextInt64() << 64 | (ulong)rng.NextInt64()), rng.Next(16, 129))
                : new IpPrefix(IpAddress.FromV4((uint)rng.NextInt64()), rng.Next(8, 33));
        }
        var table = new LpmTable<int>();
        // This thread's CPU time, not the wall clock: a loaded machine (other test processes)
        // stretches the wall clock without making the inserts any more expensive.
        long cpu0 = ThreadCpuNanoseconds();
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < prefixes.Length; i++)
        {
            table.Set(prefixes[i], i);
        }
        watch.Stop();
        var cpu = TimeSpan.FromTicks((ThreadCpuNanoseconds() - cpu0) / 100);
        Assert.True(cpu < TimeSpan.FromSeconds(1), $"100k inserts took {cpu} of CPU ({watch.Elapsed} wall clock)");

        var probes = new IpAddress[1024];
        for (int i = 0; i < probes.Length; i++)
        {
            probes[i] = prefixes[rng.Next(prefixes.Length)].Address;
        }
        int hits = 0;
        foreach (var p in probes)
        {
            hits += table.TryLookup(p, out _) ? 1 : 0;
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int round = 0; round < 10; round++)
        {
            foreach (var p in probes)
            {
                hits += table.TryLookup(p, out _) ? 1 : 0;
            }
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(11 * probes.Length, hits);
    }

    [Fact]
    public async Task ReadersSeeConsistentValuesWhileOneWriterChangesTheTable()
    {
        var table = new LpmTable<int>();
        var stable = IpPrefix.Parse("10.0.0.0/8");
        table.Set(stable, 1);
        using var stop = new CancellationTokenSource();
        int failures = 0;
        var reader = Task.Run(() =>
        {
            var probe = IpAddress.Parse("10.200.0.1");
            while (!stop.IsCancellationRequested)
            {
                // The /8 is never removed, so every probe must hit something.
                if (!table.TryLookup(probe, out int v) || v < 1)
                {
                    Interlocked.Increment(ref failures);
                }
            }
        });
        var rng = new System.Random(3);
        for (int i = 0; i < 50_000; i++)
        {
            var p = new IpPrefix(IpAddress.FromV4(0x0A000000u | (uint)rng.Next(1 << 24)), rng.Next(9, 33));
            if (rng.Next(2) == 0)
            {
                table.Set(p, 2);
            }
            else
            {
                table.Remove(p);
            }
        }
        stop.Cancel();
        await reader;
        Assert.Equal(0, failures);
    }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out Timespec time);

    /// <summary>CLOCK_THREAD_CPUTIME_ID (3): CPU time of the calling thread.</summary>
    private static long ThreadCpuNanoseconds() =>
        ClockGetTime(3, out var t) == 0 ? t.Seconds * 1_000_000_000 + t.Nanoseconds : throw new InvalidOperationException("clock_gettime failed");
}
