using System.Diagnostics;

namespace Gateway.Benchmarks;

/// <summary>
/// <see cref="OverlayStageBenchmarks"/> for a shared, loaded machine where BenchmarkDotNet's
/// separate phases (and its two-minute build of a boilerplate project) do not fit: each stage runs
/// in bursts of 512 operations, the stages take turns burst by burst, and the 10th percentile and
/// median of the bursts are reported per stage. Bursts that another process interrupted are slow
/// and fall above the low percentile, so p10 is close to what the code costs on a quiet core.
/// <code>dotnet perf/Gateway.Benchmarks/bin/Release/net10.0/Gateway.Benchmarks.dll --overlay-stages [ROUNDS]</code>
/// </summary>
internal static class OverlayStageTimes
{
    private const int Burst = 512;

    public static int Run(string[] args)
    {
        int rounds = args.Length > 1 && int.TryParse(args[1], out int r) && r > 0 ? r : 2000;
        var bench = new OverlayStageBenchmarks();
        bench.Setup();
        try
        {
            (string Name, Action Run)[] stages =
            [
                ("parse + conntrack hit (egress policy)", () => bench.ParsePolicy()),
                ("VXLAN + outer IPv4/UDP header write", bench.VxlanWrite),
                ("BeginOutbound, all but the AEAD", () => bench.BeginOutbound()),
                ("inner parse + conntrack hit (ingress policy)", () => bench.InboundParsePolicy()),
                ("AcceptInbound: VXLAN, sender binding, ingress policy", () => bench.AcceptInbound()),
            ];
            var ns = new double[stages.Length][];
            long[] allocated = new long[stages.Length];
            for (int s = 0; s < stages.Length; s++)
            {
                ns[s] = new double[rounds];
                for (int i = 0; i < 50; i++) stages[s].Run(); // tier-up
            }
            for (int round = 0; round < rounds; round++)
            {
                for (int s = 0; s < stages.Length; s++)
                {
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    long t0 = Stopwatch.GetTimestamp();
                    stages[s].Run();
                    long t1 = Stopwatch.GetTimestamp();
                    allocated[s] += GC.GetAllocatedBytesForCurrentThread() - before;
                    ns[s][round] = (t1 - t0) * 1e9 / Stopwatch.Frequency / Burst;
                }
            }
            Console.WriteLine($"Overlay send- and receive-path stages, 1420-byte packets of an established TCP flow; {rounds} bursts of {Burst} per stage, interleaved.");
            Console.WriteLine($"Load average at the end: {LoadAverage()}");
            Console.WriteLine();
            Console.WriteLine("| stage | p10 ns/packet | median ns/packet | allocated B/packet |");
            Console.WriteLine("| --- | ---: | ---: | ---: |");
            for (int s = 0; s < stages.Length; s++)
            {
                Array.Sort(ns[s]);
                Console.WriteLine($"| {stages[s].Name} | {ns[s][rounds / 10]:F1} | {ns[s][rounds / 2]:F1} | {(double)allocated[s] / ((long)rounds * Burst):F1} |");
            }
        }
        finally
        {
            bench.Cleanup();
        }
        return 0;
    }

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
    }
}
