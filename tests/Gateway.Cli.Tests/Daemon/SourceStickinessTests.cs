using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// The Linux kernel WireGuard selftest's source address stickiness (netns.sh, "reply to sender"):
/// `gateway up` on a host whose underlay interface has two addresses answers a peer from the
/// address the peer wrote to, not from the one the kernel's route would pick. Stock wireguard-go
/// 0.0.20231211 initiates to the secondary address; a capture on the responder's interface shows
/// every datagram the responder sends leaving from it. Then wireguard-go switches to the primary
/// address and the replies follow. IPv4 and IPv6 underlay. See docs/testing.md.
/// </summary>
[Collection("daemon")]
public partial class SourceStickinessTests
{
    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void RepliesLeaveFromTheAddressThePeerWroteToAndFollowItsSwitch(bool ipv6)
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        Skip.IfNot(File.Exists("/usr/bin/tcpdump") || File.Exists("/usr/sbin/tcpdump"), "needs tcpdump (scripts/setup.sh installs it)");
        using var t = new Topology();
        string veth = $"vb{t.Id}";
        // The responder B: primary address first (the kernel's choice of source towards A), then a
        // secondary in the same subnet.
        string peerA = ipv6 ? "fd00:245::1" : t.A.Underlay;
        string primary = ipv6 ? "fd00:245::2" : t.B.Underlay;
        string secondary = ipv6 ? "fd00:245::20" : "192.168.241.20";
        if (ipv6)
        {
            t.A.Exec($"ip addr add {peerA}/64 dev va{t.Id} nodad");
            t.B.Exec($"ip addr add {primary}/64 dev {veth} nodad");
        }
        t.B.Exec($"ip addr add {secondary}/{(ipv6 ? 64 : 24)} dev {veth}{(ipv6 ? " nodad" : "")}");
        string kernelChoice = t.B.Exec($"ip route get {peerA}");
        Assert.Contains($"src {primary}", kernelChoice); // without stickiness replies would leave from here

        t.B.StartGateway(t.A, endpoint: false);
        t.B.WaitForLog(" up: listening");
        t.A.StartWireguardGo(t.B, endpoint: false, version: WireGuardGoBuilds.Backports);
        string at = ipv6 ? $"[{secondary}]" : secondary;
        t.A.Exec($"wg set {t.A.Interface} peer {t.B.PublicKey.ToBase64()} endpoint {at}:{t.B.Port}");

        // Phase 1: everything goes to the secondary address; every reply must leave from it.
        var first = Capture(t, veth, "secondary", () => PingEventually(t, 5));
        var fromB = Sent(first, peerA);
        Assert.True(fromB.Count >= 5, $"only {fromB.Count} datagrams from the responder:\n{string.Join('\n', first)}");
        Assert.All(fromB, source => Assert.Equal(secondary, source));
        Assert.Contains($"{(ipv6 ? $"[{secondary}]" : secondary)}:{t.B.Port}", t.A.Exec($"wg show {t.A.Interface} endpoints"));

        // Phase 2: the initiator switches to the primary address; the replies follow it.
        string to = ipv6 ? $"[{primary}]" : primary;
        var second = Capture(t, veth, "primary", () =>
        {
            t.A.Exec($"wg set {t.A.Interface} peer {t.B.PublicKey.ToBase64()} endpoint {to}:{t.B.Port}");
            PingEventually(t, 5);
        });
        // From the first datagram A writes to the primary address on, B answers from it.
        int switched = second.FindIndex(line => line.Contains($" > {primary}.{t.B.Port}:", StringComparison.Ordinal));
        Assert.True(switched >= 0, $"nothing went to {primary}:\n{string.Join('\n', second)}");
        var after = Sent(second.Skip(switched).ToList(), peerA);
        Assert.True(after.Count >= 5, $"only {after.Count} datagrams from the responder after the switch:\n{string.Join('\n', second)}");
        Assert.All(after, source => Assert.Equal(primary, source));
        Assert.Contains($"{to}:{t.B.Port}", t.A.Exec($"wg show {t.A.Interface} endpoints"));
    }

    /// <summary>Pings B's tunnel address from A until <paramref name="count"/> answers in one run came
    /// back (the handshake, another process, comes first), bounded.</summary>
    private static void PingEventually(Topology t, int count)
    {
        var watch = Stopwatch.StartNew();
        string output = "";
        while (watch.Elapsed < TimeSpan.FromSeconds(30))
        {
            output = t.A.Exec($"ping -c {count} -i 0.2 -W 2 {t.B.TunnelAddress}", check: false);
            if (output.Contains($" {count} received", StringComparison.Ordinal))
            {
                return;
            }
        }
        Assert.Fail($"no answers from {t.B.TunnelAddress}:\n{output}\n{t.A.Log}\n{t.B.Log}");
    }

    /// <summary>Captures B's underlay interface while <paramref name="traffic"/> runs; the tunnel's
    /// datagrams as tcpdump prints them, in order.</summary>
    private static List<string> Capture(Topology t, string veth, string name, Action traffic)
    {
        string pcap = Path.Combine(Path.GetTempPath(), $"gw-it-{t.Id}-sticky-{name}.pcap");
        try
        {
            var capture = t.StartProcess(t.B.Ns, $"tcpdump --immediate-mode -i {veth} -U -s 96 -w {pcap} udp port {t.B.Port}");
            var watch = Stopwatch.StartNew();
            // tcpdump is another process: it announces that it listens once the capture is open.
            while (!t.Logs[capture].ToString().Contains("listening on", StringComparison.Ordinal))
            {
                Assert.True(!capture.HasExited && watch.Elapsed < TimeSpan.FromSeconds(30), $"tcpdump did not start: {t.Logs[capture]}");
                Thread.Sleep(20);
            }
            traffic();
            Sh.Run($"kill -INT {capture.Id}");
            Assert.True(capture.WaitForExit(10_000), "tcpdump did not stop");
            return Sh.Run($"tcpdump -nn -r {pcap}", check: false)
                .Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Where(line => line.Contains(" UDP", StringComparison.Ordinal))
                .ToList();
        }
        finally
        {
            File.Delete(pcap);
        }
    }

    /// <summary>The source addresses of the datagrams sent to <paramref name="peer"/> (the responder's), in order.</summary>
    private static List<string> Sent(List<string> lines, string peer)
    {
        var sources = new List<string>();
        foreach (string line in lines)
        {
            // "12:00:00.000000 IP 192.168.241.20.51820 > 192.168.241.1.41823: UDP, length 92"
            // "12:00:00.000000 IP6 fd00:245::20.51820 > fd00:245::1.41823: UDP, length 92"
            var m = SourceAndPort().Match(line);
            if (m.Success && m.Groups[3].Value == peer)
            {
                sources.Add(m.Groups[1].Value);
            }
        }
        return sources;
    }

    [GeneratedRegex(@" IP6? ([0-9a-f:.]+)\.(\d+) > ([0-9a-f:.]+)\.(\d+): ")]
    private static partial Regex SourceAndPort();
}
