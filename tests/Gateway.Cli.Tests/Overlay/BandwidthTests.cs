using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Gateway.Cli.Demo;
using Xunit.Abstractions;

namespace Gateway.Cli.Tests.Overlay;

/// <summary>
/// Pod bandwidth limits end to end: two nodes running `gateway up` in overlay mode, pods in their
/// own namespaces, kubernetes.io/egress-bandwidth and ingress-bandwidth annotations in the
/// endpoints file, iperf3 and ping between pods. Rates are averaged over whole runs (the machine
/// is shared); the load average is printed with the figures. Root only.
/// </summary>
[Collection("daemon")]
public class BandwidthTests(ITestOutputHelper output)
{
    private static int s_runs;

    private static string? SkipReason() =>
        DemoCluster.CannotRunReason() ?? (File.Exists("/usr/bin/iperf3") ? null : "needs iperf3 (scripts/setup.sh installs it)") ??
        (File.Exists("/usr/bin/ping") ? null : "needs ping");

    private sealed record World(DemoCluster Cluster, Dictionary<string, DemoCluster.Pod> Pods) : IDisposable
    {
        public void Dispose() => Cluster.Dispose();
    }

    /// <summary>Node A: slow (egress 10M), fast (egress 50M), free (no limit). Node B: r1, r2, r3
    /// (no limit) and capped (ingress 10M).</summary>
    private static World Build(string egressSlow = "10M", bool annotations = true)
    {
        var cluster = new DemoCluster($"bw{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_runs)}");
        try
        {
            cluster.BuildNodes();
            var pods = new Dictionary<string, DemoCluster.Pod>
            {
                ["slow"] = cluster.AddPod(cluster.A, "slow", "10.11.1.10", ("app", "slow")),
                ["fast"] = cluster.AddPod(cluster.A, "fast", "10.11.1.11", ("app", "fast")),
                ["free"] = cluster.AddPod(cluster.A, "free", "10.11.1.12", ("app", "free")),
                ["r1"] = cluster.AddPod(cluster.B, "r1", "10.11.2.10", ("app", "r1")),
                ["r2"] = cluster.AddPod(cluster.B, "r2", "10.11.2.11", ("app", "r2")),
                ["r3"] = cluster.AddPod(cluster.B, "r3", "10.11.2.12", ("app", "r3")),
                ["capped"] = cluster.AddPod(cluster.B, "capped", "10.11.2.13", ("app", "capped")),
            };
            cluster.WriteConfiguration("");
            if (annotations)
            {
                WriteEndpoints(cluster, egressSlow);
            }
            cluster.StartNodes();
            foreach (var node in new[] { cluster.A, cluster.B })
            {
                CliHarness.WaitFor(() => node.Log.ToString().Contains(" up: listening", StringComparison.Ordinal), $"{node.Name} up", TimeSpan.FromSeconds(60));
            }
            return new World(cluster, pods);
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    private static void WriteEndpoints(DemoCluster cluster, string egressSlow) =>
        DemoCluster.WriteSecret(Path.Combine(cluster.Directory, "endpoints.yaml"), $"""
            endpoints:
              - {"{"}name: slow, ips: [10.11.1.10], labels: {"{"}app: slow{"}"}, annotations: {"{"}kubernetes.io/egress-bandwidth: {egressSlow}{"}"}{"}"}
              - {"{"}name: fast, ips: [10.11.1.11], labels: {"{"}app: fast{"}"}, annotations: {"{"}kubernetes.io/egress-bandwidth: 50M{"}"}{"}"}
              - {"{"}name: free, ips: [10.11.1.12], labels: {"{"}app: free{"}"}{"}"}
              - {"{"}name: r1, ips: [10.11.2.10], labels: {"{"}app: r1{"}"}{"}"}
              - {"{"}name: r2, ips: [10.11.2.11], labels: {"{"}app: r2{"}"}{"}"}
              - {"{"}name: r3, ips: [10.11.2.12], labels: {"{"}app: r3{"}"}{"}"}
              - name: capped
                ips: [10.11.2.13]
                labels: {"{"}app: capped{"}"}
                annotations:
                  kubernetes.io/ingress-bandwidth: 10M
                  kubernetes.io/egress-bandwidth: not-a-rate
            """);

    /// <summary>A receiver's rates over one iperf3 run: the application's (goodput) and the IP
    /// packets' (what a limit counts: bytes its eth0 received, less the 14-byte Ethernet headers).</summary>
    private readonly record struct Rate(double Goodput, double Ip, long Retransmits)
    {
        public override string ToString() => $"{Ip / 1e6:F2} Mbit/s IP ({Goodput / 1e6:F2} Mbit/s goodput, {Retransmits} TCP retransmits)";
    }

    private static (long Bytes, long Packets) RxCounters(DemoCluster.Pod pod) =>
        (long.Parse(DemoCluster.Exec(pod.Ns, "cat /sys/class/net/eth0/statistics/rx_bytes").Trim(), CultureInfo.InvariantCulture),
         long.Parse(DemoCluster.Exec(pod.Ns, "cat /sys/class/net/eth0/statistics/rx_packets").Trim(), CultureInfo.InvariantCulture));

    private static Rate Measure(DemoCluster cluster, DemoCluster.Pod from, DemoCluster.Pod to, string options, int port)
    {
        var (bytes0, packets0) = RxCounters(to);
        var (goodput, seconds, retransmits) = Iperf(cluster, from, to, options, port);
        var (bytes1, packets1) = RxCounters(to);
        return new Rate(goodput, (bytes1 - bytes0 - 14 * (packets1 - packets0)) * 8 / seconds, retransmits);
    }

    /// <summary>Runs an iperf3 client in <paramref name="from"/> against a one-off server in
    /// <paramref name="to"/>; returns the receiver's bits per second (the server's count) and the
    /// seconds it measured.</summary>
    internal static (double BitsPerSecond, double Seconds, long Retransmits) Iperf(DemoCluster cluster, DemoCluster.Pod from, DemoCluster.Pod to, string options, int port)
    {
        var server = cluster.StartProcess(to.Ns, $"iperf3 -s -1 -B {to.Ip} -p {port}");
        string json = "";
        var watch = Stopwatch.StartNew();
        // The server is another process starting up: retry a refused connect (bounded).
        while (watch.Elapsed < TimeSpan.FromSeconds(60))
        {
            json = DemoCluster.Exec(from.Ns, $"iperf3 -c {to.Ip} -p {port} {options} -J", check: false);
            if (json.Contains("\"sum_received\"", StringComparison.Ordinal) || json.Contains("\"sum\"", StringComparison.Ordinal) && json.Contains("\"lost_percent\"", StringComparison.Ordinal))
            {
                break;
            }
            Thread.Sleep(200);
        }
        server.WaitForExit(20_000);
        using var doc = JsonDocument.Parse(json[json.IndexOf('{')..]);
        var end = doc.RootElement.GetProperty("end");
        // TCP: the server's count; UDP: the sum (iperf3's UDP goodput figure is the sender's, so
        // only the IP rate from the receiver's counters means anything there).
        var sum = end.TryGetProperty("sum_received", out var received) ? received : end.GetProperty("sum");
        long retransmits = end.TryGetProperty("sum_sent", out var sent) && sent.TryGetProperty("retransmits", out var r) ? r.GetInt64() : 0;
        return (sum.GetProperty("bits_per_second").GetDouble(), sum.GetProperty("seconds").GetDouble(), retransmits);
    }

    /// <summary>Round-trip times (ms) of the replies a ping got.</summary>
    private static List<double> Ping(DemoCluster.Pod from, DemoCluster.Pod to, int count, string interval = "0.25") =>
        Regex.Matches(DemoCluster.Exec(from.Ns, $"ping -c {count} -i {interval} -W 5 {to.Ip}", check: false), @"time=([0-9.]+) ms")
            .Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();

    /// <summary>The value of the series <paramref name="name"/> whose labels include all of
    /// <paramref name="labels"/> (any order), or -1 when there is none.</summary>
    private static double Sample(string metrics, string name, params string[] labels)
    {
        foreach (string line in metrics.Split('\n'))
        {
            if (line.StartsWith(name + "{", StringComparison.Ordinal) && line.IndexOf('}') is int close and > 0 &&
                labels.All(l => line[..close].Contains(l, StringComparison.Ordinal)))
            {
                return double.Parse(line[(close + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }
        return -1;
    }

    private static string Load() => File.ReadAllText("/proc/loadavg").Trim();

    [SkippableFact]
    public void TwoPodsHoldTheirEgressLimitsTogetherWhileAnUnlimitedPodIsUnaffected()
    {
        Skip.If(SkipReason() is not null, SkipReason());
        using var world = Build();
        var (cluster, pods) = (world.Cluster, world.Pods);
        // The malformed annotation is reported with file, line and reason, and the node runs on.
        Assert.Contains("endpoints.yaml", cluster.B.Log.ToString());
        Assert.True(cluster.B.Log.ToString().Contains("(line 13): 'not-a-rate' has no number", StringComparison.Ordinal), cluster.B.Log.ToString());
        Assert.True(DemoCluster.Ping(pods["free"], pods["r3"]) > 0, $"no path\n{cluster.A.Log}\n{cluster.B.Log}");

        Rate slow = default, fast = default, free = default;
        List<double> slowPing = [], freePing = [];
        string loadBefore = Load();
        var runs = new[]
        {
            Task.Run(() => slow = Measure(cluster, pods["slow"], pods["r1"], "-t 10", 5201)),
            Task.Run(() => fast = Measure(cluster, pods["fast"], pods["r2"], "-t 10", 5201)),
            // The unlimited pod at 100 Mbit/s (twice the highest limit), paced by iperf3 itself: a
            // flood that saturates the node's CPU and TUN queue would cost every flow packets.
            Task.Run(() => free = Measure(cluster, pods["free"], pods["r3"], "-t 10 -b 100M", 5201)),
            Task.Run(() =>
            {
                Thread.Sleep(3000); // slow's flow is running by now
                slowPing = Ping(pods["slow"], pods["r2"], 20);
            }),
            Task.Run(() =>
            {
                Thread.Sleep(3000);
                freePing = Ping(pods["free"], pods["r1"], 20);
            }),
        };
        Task.WaitAll(runs);
        string metrics = DemoCluster.Metrics(cluster.A);
        output.WriteLine($"load before {loadBefore}, after {Load()}");
        output.WriteLine($"slow (10M): {slow}; fast (50M): {fast}; free (no limit, iperf3 -b 100M): {free}");
        output.WriteLine($"ping from slow: {slowPing.Count}/20 replies, max {(slowPing.Count > 0 ? slowPing.Max() : 0):F0} ms; from free: {freePing.Count}/20, max {(freePing.Count > 0 ? freePing.Max() : 0):F0} ms");
        output.WriteLine(string.Join("\n", metrics.Split('\n').Where(l => l.StartsWith("gateway_bandwidth", StringComparison.Ordinal))));

        // At the IP level (what the limit counts; the goodput is lower by the TCP/IP headers, 52 of
        // 1370 bytes a segment): never above the limit by more than 5 %; below it only as far as TCP
        // leaves the pod's queue empty after losses elsewhere on a loaded machine (retransmits are
        // printed; the UDP test below shows the pacer itself within 1 %).
        // Quiet-machine target ±5 %; at load average 40-45 on 2 vCPUs single runs gave 89-99.5 %
        // (docs/benchmarks.md), so the floor here is 85 % and the ceiling stays at +5 %.
        string load = Load();
        Assert.True(slow.Ip is >= 8.5e6 and <= 10.5e6, $"slow {slow} (load {load})");
        Assert.True(fast.Ip is >= 42.5e6 and <= 52.5e6, $"fast {fast} (load {load})");
        Assert.True(free.Goodput > 90e6, $"the unlimited pod got {free}");
        // A ping from the saturated pod waits behind its flow, but never beyond the 2 s horizon.
        Assert.NotEmpty(slowPing);
        Assert.True(slowPing.Max() < 2000 + 500, $"slow's ping waited {slowPing.Max()} ms");
        Assert.Equal(20, freePing.Count);
        Assert.True(freePing.Max() < 500, $"free's ping waited {freePing.Max()} ms");
        Assert.True(Sample(metrics, "gateway_bandwidth_paced_bytes_total", "endpoint=\"default/slow\"") > 5e6);
        Assert.Equal(-1, Sample(metrics, "gateway_bandwidth_paced_bytes_total", "endpoint=\"default/free\""));

        // A changed annotation applies on reload, to the running node.
        WriteEndpoints(cluster, "20M");
        CliHarness.WaitFor(() => Sample(DemoCluster.Metrics(cluster.A), "gateway_bandwidth_limit_bits_per_second", "endpoint=\"default/slow\"") == 20e6,
            "slow's new limit in node-a's metrics", TimeSpan.FromSeconds(30));
    }

    [SkippableFact]
    public void UdpAtFiveTimesTheLimitIsCutAtTheHorizonAndIngressLimitsHold()
    {
        Skip.If(SkipReason() is not null, SkipReason());
        using var world = Build();
        var (cluster, pods) = (world.Cluster, world.Pods);
        Assert.True(DemoCluster.Ping(pods["free"], pods["r3"]) > 0, $"no path\n{cluster.A.Log}\n{cluster.B.Log}");
        string loadBefore = Load();
        Rate udp = default;
        List<double> slowPing = [], freePing = [];
        Task.WaitAll(
            Task.Run(() => udp = Measure(cluster, pods["slow"], pods["r1"], "-u -b 50M -l 1300 -t 10", 5201)),
            Task.Run(() =>
            {
                Thread.Sleep(3000); // slow's queue is at the horizon by now
                slowPing = Ping(pods["slow"], pods["r2"], 20);
            }),
            Task.Run(() =>
            {
                Thread.Sleep(3000);
                freePing = Ping(pods["free"], pods["r2"], 20);
            }));
        var ingress = Measure(cluster, pods["free"], pods["capped"], "-t 10", 5202);
        string metricsA = DemoCluster.Metrics(cluster.A), metricsB = DemoCluster.Metrics(cluster.B);
        output.WriteLine($"load before {loadBefore}, after {Load()}");
        output.WriteLine($"UDP at 50M from slow (10M): {udp.Ip / 1e6:F2} Mbit/s IP received; TCP into capped (ingress 10M): {ingress}");
        output.WriteLine($"ping from slow during its UDP flood: {slowPing.Count}/20 replies, max {(slowPing.Count > 0 ? slowPing.Max() : 0):F0} ms; from free: {freePing.Count}/20, max {(freePing.Count > 0 ? freePing.Max() : 0):F0} ms");
        output.WriteLine(string.Join("\n", (metricsA + metricsB).Split('\n').Where(l => l.StartsWith("gateway_bandwidth", StringComparison.Ordinal))));

        double horizonDrops = Sample(metricsA, "gateway_bandwidth_drop_count_total", "endpoint=\"default/slow\"", "direction=\"EGRESS\"", "reason=\"horizon\"");
        Assert.True(horizonDrops > 1000, $"{horizonDrops} horizon drops");
        Assert.InRange(udp.Ip, 9.5e6, 10.5e6);
        // A ping from the flooding pod waits behind its queue or is dropped at the horizon, never
        // waits longer; the unlimited pod's ping does not wait at all.
        Assert.True(slowPing.Count == 0 || slowPing.Max() < 2000 + 500, $"slow's ping waited {slowPing.Max()} ms");
        Assert.Equal(20, freePing.Count);
        Assert.True(freePing.Max() < 500, $"free's ping waited {freePing.Max()} ms");
        // The bucket starts full, one second deep (as Cilium's): over 10 s the receiver may get up
        // to 11 s worth of the rate; never less than the rate.
        Assert.InRange(ingress.Ip, 9.5e6, 11.0e6);
        Assert.True(Sample(metricsB, "gateway_bandwidth_drop_count_total", "endpoint=\"default/capped\"", "direction=\"INGRESS\"") > 0);
        // Drops are flow events with Cilium's reason.
        var (code, flows, _) = CliHarness.Run("observe", "--file", cluster.A.FlowLogPath, "--verdict", "DROPPED", "--json");
        Assert.Equal(0, code);
        Assert.Contains("REACHED_EDT_RATE_LIMITING_DROP_HORIZON", flows);
    }

    /// <summary>
    /// The kernel's tbf at the same rates, for comparison (docs/benchmarks.md): no annotations,
    /// tbf on the sending pods' own eth0 (queue bounded at 2 s like the EDT horizon), the same
    /// concurrent flows. Checks that this harness measures a known limiter right.
    /// </summary>
    [SkippableFact]
    public void KernelTbfAtTheSameRatesMeasuredTheSameWay()
    {
        Skip.If(SkipReason() is not null, SkipReason());
        using var world = Build(annotations: false);
        var (cluster, pods) = (world.Cluster, world.Pods);
        DemoCluster.Exec(pods["slow"].Ns, "tc qdisc add dev eth0 root tbf rate 10mbit burst 16kb latency 2s");
        DemoCluster.Exec(pods["fast"].Ns, "tc qdisc add dev eth0 root tbf rate 50mbit burst 64kb latency 2s");
        Assert.True(DemoCluster.Ping(pods["free"], pods["r3"]) > 0, $"no path\n{cluster.A.Log}\n{cluster.B.Log}");
        Rate slow = default, fast = default, free = default;
        string loadBefore = Load();
        Task.WaitAll(
            Task.Run(() => slow = Measure(cluster, pods["slow"], pods["r1"], "-t 10", 5201)),
            Task.Run(() => fast = Measure(cluster, pods["fast"], pods["r2"], "-t 10", 5201)),
            Task.Run(() => free = Measure(cluster, pods["free"], pods["r3"], "-t 10 -b 100M", 5201)));
        output.WriteLine($"load before {loadBefore}, after {Load()}");
        var udp = Measure(cluster, pods["slow"], pods["r1"], "-u -b 50M -l 1300 -t 10", 5202);
        output.WriteLine($"tbf slow (10mbit): {slow}; tbf fast (50mbit): {fast}; free (no limit, iperf3 -b 100M): {free}");
        output.WriteLine($"UDP at 50M from slow under tbf 10mbit: {udp.Ip / 1e6:F2} Mbit/s IP received");
        // tbf counts the Ethernet frame (IP + 14): the IP rate is 1.0 % under the limit at 1370-byte
        // packets. The same bounds as for Gateway's EDT (TCP under load: see above).
        string load = Load();
        Assert.True(slow.Ip is >= 8.5e6 and <= 10.5e6, $"slow {slow} (load {load})");
        Assert.True(fast.Ip is >= 42.5e6 and <= 52.5e6, $"fast {fast} (load {load})");
    }
}
