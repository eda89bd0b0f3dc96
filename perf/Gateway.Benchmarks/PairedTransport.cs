using System.Diagnostics;

namespace Gateway.Benchmarks;

/// <summary>
/// Engine overhead over the bare AEAD, measured as a paired comparison for shared, noisy machines:
/// short bursts of the raw call and of the engine call alternate (order swapped every round), each
/// round gives one ratio, and the median of those ratios is reported. Load that comes and goes
/// hits both sides of a round alike, which separate BenchmarkDotNet phases cannot promise.
/// Uses the same operations as <see cref="TunnelTransportBenchmarks"/>. An A/A row (the raw call
/// against itself) shows how far from 1.0 the method strays on the machine at the time.
/// <code>dotnet perf/Gateway.Benchmarks/bin/Release/net10.0/Gateway.Benchmarks.dll --paired-transport [ROUNDS]</code>
/// </summary>
internal static class PairedTransport
{
    private const int Burst = 1000;

    public static int Run(string[] args)
    {
        int rounds = args.Length > 1 && int.TryParse(args[1], out int r) && r > 0 ? r : 300;
        Console.WriteLine($"Paired bursts of {Burst} operations, {rounds} rounds per size; ratio = engine / raw AEAD per round.");
        Console.WriteLine();
        Console.WriteLine("| operation | size | raw AEAD, median | engine, median | ratio p25 | **ratio median** | ratio p75 | engine bytes allocated/op |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (int size in new[] { 64, 1420 })
        {
            var bench = new TunnelTransportBenchmarks { Size = size };
            bench.Setup();
            try
            {
                Report("seal", size, rounds, bench.RawSeal, bench.EngineSeal);
                Report("open", size, rounds, () => bench.RawOpen() ? 1 : 0, () => bench.EngineOpen());
                // Calibration: the same call on both sides of every round; its ratio shows the noise floor.
                Report("A/A: raw open vs raw open", size, rounds, () => bench.RawOpen() ? 1 : 0, () => bench.RawOpen() ? 1 : 0);
            }
            finally
            {
                bench.Cleanup();
            }
        }
        return 0;
    }

    internal static void Report(string operation, int size, int rounds, Func<int> raw, Func<int> engine)
    {
        for (int i = 0; i < 20; i++)
        {
            Time(raw);
            Time(engine);
        }
        var rawNs = new double[rounds];
        var engineNs = new double[rounds];
        var ratios = new double[rounds];
        long allocated = 0;
        for (int round = 0; round < rounds; round++)
        {
            long before;
            if (round % 2 == 0)
            {
                rawNs[round] = Time(raw);
                before = GC.GetAllocatedBytesForCurrentThread();
                engineNs[round] = Time(engine);
                allocated += GC.GetAllocatedBytesForCurrentThread() - before;
            }
            else
            {
                before = GC.GetAllocatedBytesForCurrentThread();
                engineNs[round] = Time(engine);
                allocated += GC.GetAllocatedBytesForCurrentThread() - before;
                rawNs[round] = Time(raw);
            }
            ratios[round] = engineNs[round] / rawNs[round];
        }
        Array.Sort(ratios);
        Console.WriteLine($"| {operation} | {size} B | {Median(rawNs):F0} ns | {Median(engineNs):F0} ns | {ratios[rounds / 4]:F3} | **{Median(ratios):F3}** | {ratios[rounds * 3 / 4]:F3} | {(double)allocated / ((long)rounds * Burst):F1} |");
    }

    private static double Time(Func<int> operation)
    {
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < Burst; i++)
        {
            operation();
        }
        return Stopwatch.GetElapsedTime(start).TotalNanoseconds / Burst;
    }

    private static double Median(double[] values)
    {
        var sorted = values.ToArray();
        Array.Sort(sorted);
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
