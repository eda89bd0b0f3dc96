using System.Diagnostics;
using System.Text.RegularExpressions;
using Gateway.Cli.Demo;
using Gateway.Node.Daemon;

namespace Gateway.Cli.Tests.Overlay;

/// <summary>
/// Strict mode fails closed at all times: the prohibit routes follow reloads, stay through a
/// clean stop and a restart (which adopts them), and only `gateway down` removes them; a daemon
/// restarted under traffic lets not one plaintext cluster packet onto the underlay. Root only.
/// </summary>
[Collection("daemon")]
public class StrictModeTests
{
    private static int s_runs;

    private static DemoCluster Build(out DemoCluster.Pod frontend, out DemoCluster.Pod backend) =>
        ClusterDemo.Build($"sm{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_runs)}", out frontend, out _, out backend, out _);

    private static string Prohibit(string cidr) => $"prohibit {cidr} metric {WireGuardNode.StrictRouteMetric}";

    private static string Routes(DemoCluster.Node node) => DemoCluster.Exec(node.Ns, "ip route");

    private static void Stop(DemoCluster.Node node)
    {
        var process = node.Process!;
        DemoCluster.Sh($"kill -TERM {process.Id}");
        Assert.True(process.WaitForExit(20_000), $"{node.Name} did not stop:\n{node.Log}");
    }

    [SkippableFact]
    public void ProhibitRoutesFollowReloadsSurviveStopAndRestartAndGoOnlyWithGatewayDown()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        using var cluster = Build(out var frontend, out var backend);
        var a = cluster.A;
        // The UAPI socket appears before the routes and the SIGHUP handler: wait for the start-up line.
        CliHarness.WaitFor(() => a.Log.ToString().Contains(" up: listening", StringComparison.Ordinal), "node-a's start-up line");
        Assert.Contains(Prohibit("10.11.0.0/16"), Routes(a));

        // A cluster CIDR added by a reload is covered at once; one removed is uncovered.
        string original = File.ReadAllText(a.ConfigPath);
        File.WriteAllText(a.ConfigPath, original.Replace("ClusterCIDR = 10.11.0.0/16", "ClusterCIDR = 10.11.0.0/16, 10.99.0.0/16"));
        DemoCluster.Sh($"kill -HUP {a.Process!.Id}");
        CliHarness.WaitFor(() => Routes(a).Contains(Prohibit("10.99.0.0/16")), $"the prohibit route of the added cluster CIDR\n{a.Log}\n{Routes(a)}");
        File.WriteAllText(a.ConfigPath, original.Replace("ClusterCIDR = 10.11.0.0/16", "ClusterCIDR = 10.99.0.0/16"));
        DemoCluster.Sh($"kill -HUP {a.Process!.Id}");
        CliHarness.WaitFor(() => !Routes(a).Contains(Prohibit("10.11.0.0/16")), "the prohibit route of the removed cluster CIDR to go");
        Assert.Contains(Prohibit("10.99.0.0/16"), Routes(a));
        File.WriteAllText(a.ConfigPath, original);
        DemoCluster.Sh($"kill -HUP {a.Process!.Id}");
        CliHarness.WaitFor(() => Routes(a).Contains(Prohibit("10.11.0.0/16")) && !Routes(a).Contains("10.99.0.0/16"), "the original routes back");

        // A clean stop keeps them: with the tunnel gone the kernel refuses cluster traffic.
        Stop(a);
        Assert.Contains(Prohibit("10.11.0.0/16"), Routes(a));
        // (a prohibit route answers route lookups with EACCES)
        Assert.Contains("Permission denied", DemoCluster.Exec(a.Ns, $"ip route get {backend.Ip}", check: false));

        // A restart adopts them without error, and traffic flows again.
        a.Log.Clear();
        cluster.StartNode(a);
        CliHarness.WaitFor(() => a.Log.ToString().Contains(" up: listening", StringComparison.Ordinal), "node-a's start-up line after the restart");
        Assert.True(DemoCluster.Ping(frontend, backend) == 3, $"ping after restart failed\n{a.Log}");
        Assert.DoesNotContain(" error ", a.Log.ToString());
        Assert.Single(Regex.Matches(Routes(a), Regex.Escape(Prohibit("10.11.0.0/16"))));

        // `gateway down` stops the daemon and removes them.
        string down = DemoCluster.Exec(a.Ns, $"dotnet {DemoCluster.GatewayDll} down {a.Interface}");
        Assert.Contains($"stopped gateway (pid {a.Process!.Id})", down);
        Assert.Contains("removed prohibit routes for 10.11.0.0/16", down);
        Assert.True(a.Process.WaitForExit(10_000));
        Assert.DoesNotContain("prohibit", Routes(a));
        // Nothing left to take down: a clear one-line error, exit 1.
        var again = DemoCluster.Sh($"ip netns exec {a.Ns} dotnet {DemoCluster.GatewayDll} down {a.Interface}; echo exit=$?", check: false);
        Assert.Contains("no running gateway and no strict-mode routes", again);
        Assert.Contains("exit=1", again);
    }

    [SkippableFact]
    public void ARestartUnderTrafficLetsNoPlaintextClusterPacketOntoTheUnderlay()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        Skip.IfNot(File.Exists("/usr/bin/tcpdump") || File.Exists("/usr/sbin/tcpdump"), "needs tcpdump (scripts/setup.sh installs it)");
        using var cluster = Build(out var frontend, out var backend);
        var a = cluster.A;
        // Give node A a default route over the underlay, as a real host has: without strict mode,
        // pod traffic would leave by it in plaintext while the tunnel is down.
        DemoCluster.Exec(a.Ns, $"ip route add default via {cluster.B.Underlay}");
        Assert.Equal(3, DemoCluster.Ping(frontend, backend));

        string pcap = Path.Combine(cluster.Directory, "restart.pcap");
        var capture = cluster.StartProcess(a.Ns, $"tcpdump --immediate-mode -i {cluster.UnderlayDeviceA} -U -s 0 -w {pcap}");
        CliHarness.WaitFor(() => File.Exists(pcap), "tcpdump to start writing");
        // A ping flood (200 packets a second) across the restart.
        var pingLog = new System.Text.StringBuilder();
        var ping = cluster.StartProcess(frontend.Ns, $"ping -n -q -i 0.005 -w 14 {backend.Ip}", log: pingLog);
        Thread.Sleep(2000); // traffic before the stop (the test's own pacing, not protocol time)

        Stop(a);
        string during = DemoCluster.Exec(a.Ns, $"ip route get {backend.Ip}", check: false);
        Thread.Sleep(1500); // pods keep sending while the node is down
        cluster.StartNode(a);
        Assert.True(ping.WaitForExit(30_000), "ping did not finish");
        ping.WaitForExit(); // flushes the output handlers
        string pingOutput;
        lock (pingLog)
        {
            pingOutput = pingLog.ToString();
        }

        DemoCluster.Sh($"kill -INT {capture.Id}");
        Assert.True(capture.WaitForExit(10_000));

        Assert.Contains("Permission denied", during); // the prohibit route's answer
        var received = Regex.Match(pingOutput, @"(\d+) packets transmitted, (\d+) received");
        Assert.True(received.Success, pingOutput);
        int sent = int.Parse(received.Groups[1].Value), got = int.Parse(received.Groups[2].Value);
        Assert.True(got > 0 && got < sent, $"expected replies before and after the restart and losses during it: {pingOutput}");

        var (code, audit, error) = CliHarness.Run("audit", pcap, "--cluster-cidr", "10.11.0.0/16");
        Assert.True(code == 0, audit + error);
        Assert.Contains("ENCRYPTED", audit);
        // And independently of the auditor: nothing between cluster addresses but the tunnel's UDP.
        string plaintext = DemoCluster.Sh($"tcpdump -nn -r {pcap} 'net 10.11.0.0/16 and not udp port 51871' 2>/dev/null | wc -l").Trim();
        Assert.Equal("0", plaintext);
        string tunnel = DemoCluster.Sh($"tcpdump -nn -r {pcap} 'udp port 51871' 2>/dev/null | wc -l").Trim();
        Assert.True(int.Parse(tunnel) > got, $"only {tunnel} tunnel packets captured");
    }
}
