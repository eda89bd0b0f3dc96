using Gateway.Datapath.Audit;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// The audit judged full-size WireGuard transport messages (32 + MTU bytes, padding capped at
/// the MTU) as plaintext. Records the underlay of a live full-speed iperf3 run between
/// `gateway up` (UDP GSO on send, GRO on receive) and wireguard-go, both the bookworm build and
/// 0.0.20231211 (which sends with GSO itself), and audits it: only WireGuard on the wire.
/// </summary>
[Collection("daemon")]
public class FullSpeedAuditTests
{
    [SkippableTheory]
    [InlineData(WireGuardGoBuilds.Bookworm)]
    [InlineData(WireGuardGoBuilds.Backports)]
    public void FullSpeedUnderlayBetweenGatewayAndWireguardGoIsEncrypted(string version)
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        Skip.IfNot(File.Exists("/usr/bin/tcpdump") || File.Exists("/usr/sbin/tcpdump"), "needs tcpdump (scripts/setup.sh installs it)");
        using var t = new Topology();
        string pcap = t.TempFile("fullspeed.pcap", "");
        // Headers only (Ethernet + IPv4 + UDP + WireGuard header), the first 4000 datagrams.
        var capture = t.StartProcess(t.A.Ns, $"tcpdump --immediate-mode -i va{t.Id} -U -s 58 -c 4000 -w {pcap}");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!t.Logs[capture].ToString().Contains("listening on", StringComparison.Ordinal) && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(20); // tcpdump starting (another process)
        }
        t.B.StartWireguardGo(t.A, endpoint: false, version: version);
        t.A.StartGateway(t.B);
        t.Iperf("-t 2 --bidir");
        Sh.Run($"kill -INT {capture.Id}", check: false);
        capture.WaitForExit(10_000);

        AuditReport report = CaptureAuditor.AuditFile(pcap);
        Assert.True(report.Verdict == "ENCRYPTED",
            $"{report.LeakPackets} leak packets, first: {string.Join("; ", report.Offenders.Select(o => $"#{o.Number} {o.Outer}"))}");
        WireGuardFlow flow = Assert.Single(report.WireGuardFlows);
        Assert.True(flow.TransportMessages > 1000, $"only {flow.TransportMessages} transport messages");
        Assert.True(flow.TransportBytes / flow.TransportMessages > 500, "the run did not reach full-size messages");
    }
}
