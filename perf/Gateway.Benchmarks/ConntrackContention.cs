using System.Diagnostics;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.Benchmarks;

/// <summary>
/// Conntrack hits on one flow from two threads at once, as the daemon makes them: the send path
/// looks up a flow's packets in one direction while the receive path looks up its replies on the
/// other core. Each thread times bursts of 4,096 lookups at one clock reading (one batch's) and
/// the 10th percentile and median of the bursts are reported, beside one thread alone.
/// <code>dotnet perf/Gateway.Benchmarks/bin/Release/net10.0/Gateway.Benchmarks.dll --conntrack-contention [BURSTS]</code>
/// </summary>
internal static class ConntrackContention
{
    private const int Burst = 4096;
    private const long Now = 1_000_000_000;

    public static int Run(string[] args)
    {
        int bursts = args.Length > 1 && int.TryParse(args[1], out int b) && b > 0 ? b : 2000;
        var ct = new Conntrack(1 << 16);
        var forward = Tcp("10.11.1.10", 45000, "10.11.2.10", 80, TcpFlag.Ack);
        var reply = Tcp("10.11.2.10", 80, "10.11.1.10", 45000, TcpFlag.Ack);
        ct.Create(Tcp("10.11.1.10", 45000, "10.11.2.10", 80, TcpFlag.Syn), Now);
        ct.Lookup(Tcp("10.11.2.10", 80, "10.11.1.10", 45000, TcpFlag.Syn | TcpFlag.Ack), Now);
        var alone = Time(ct, forward, bursts);
        double[] a = [], c = [];
        using var start = new Barrier(2);
        var other = new Thread(() => { start.SignalAndWait(); c = Time(ct, reply, bursts); });
        other.Start();
        start.SignalAndWait();
        a = Time(ct, forward, bursts);
        other.Join();
        Console.WriteLine($"Conntrack hits on one TCP flow, {bursts} bursts of {Burst} per thread; load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        Console.WriteLine("| lookups | p10 ns/lookup | median ns/lookup |");
        Console.WriteLine("| --- | ---: | ---: |");
        Console.WriteLine($"| one thread | {alone[bursts / 10]:F1} | {alone[bursts / 2]:F1} |");
        Console.WriteLine($"| two threads, forward | {a[bursts / 10]:F1} | {a[bursts / 2]:F1} |");
        Console.WriteLine($"| two threads, reply | {c[bursts / 10]:F1} | {c[bursts / 2]:F1} |");
        return 0;
    }

    private static double[] Time(Conntrack ct, FlowKey key, int bursts)
    {
        var ns = new double[bursts];
        for (int r = 0; r < bursts; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < Burst; i++)
            {
                ct.Lookup(key, Now);
            }
            ns[r] = (Stopwatch.GetTimestamp() - t0) * 1e9 / Stopwatch.Frequency / Burst;
        }
        Array.Sort(ns);
        return ns;
    }

    private static FlowKey Tcp(string src, ushort sport, string dst, ushort dport, byte flags) => new()
    {
        Source = IpAddress.Parse(src), Destination = IpAddress.Parse(dst), Protocol = IpProtocol.Tcp,
        SourcePort = sport, DestinationPort = dport, TcpFlags = flags,
    };
}
