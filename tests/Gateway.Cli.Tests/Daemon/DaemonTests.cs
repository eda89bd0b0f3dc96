using System.Text.Json;
using Gateway.Node.Uapi;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// `gateway up` end to end, in network namespaces: against itself and against stock
/// wireguard-go, managed by the stock `wg` tool. Root only; each test builds and removes its
/// own namespaces, veth pair and processes.
/// </summary>
[Collection("daemon")]
public class DaemonTests
{
    private static void SkipUnlessPossible() => Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());

    private static void AssertPing(Topology.Side from, Topology.Side to, int count = 3)
    {
        string output = from.Exec($"ping -c {count} -i 0.2 -W 3 {to.TunnelAddress}", check: false);
        Assert.True(output.Contains($"{count} received", StringComparison.Ordinal),
            $"ping {from.Ns} -> {to.TunnelAddress} failed:\n{output}\n--- {from.Interface} log:\n{from.Log}\n--- {to.Interface} log:\n{to.Log}");
    }

    [SkippableTheory]
    [InlineData(WireGuardGoBuilds.Bookworm)]
    [InlineData(WireGuardGoBuilds.Backports)]
    public void GatewayInitiatesToWireguardGoAndWgShowsTheSession(string version)
    {
        SkipUnlessPossible();
        using var t = new Topology();
        t.B.StartWireguardGo(t.A, endpoint: false, version: version);
        t.A.StartGateway(t.B);
        AssertPing(t.A, t.B);

        // The stock wg tool talks to the gateway's UAPI socket.
        string show = t.A.Exec($"wg show {t.A.Interface}");
        Assert.Contains($"peer: {t.B.PublicKey.ToBase64()}", show);
        Assert.Contains("latest handshake:", show);
        Assert.Matches(@"transfer: [0-9.]+ [KMG]?i?B received, [0-9.]+ [KMG]?i?B sent", show);
        // And both sides agree the peer's endpoint is the other's underlay address.
        Assert.Contains($"endpoint: {t.A.Underlay}:{t.A.Port}", t.B.Exec($"wg show {t.B.Interface}"));
    }

    [SkippableTheory]
    [InlineData(WireGuardGoBuilds.Bookworm)]
    [InlineData(WireGuardGoBuilds.Backports)]
    public void WireguardGoInitiatesToGateway(string version)
    {
        SkipUnlessPossible();
        using var t = new Topology();
        t.A.StartGateway(t.B, endpoint: false);
        t.B.StartWireguardGo(t.A, version: version);
        AssertPing(t.B, t.A);
        // The gateway learned wireguard-go's endpoint from the authenticated handshake.
        Assert.Contains($"endpoint: {t.B.Underlay}:{t.B.Port}", t.A.Exec($"wg show {t.A.Interface} "));
        AssertPing(t.A, t.B);
    }

    [SkippableFact]
    public void GatewayToGatewayCarriesPingAndTcp()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        t.A.StartGateway(t.B);
        t.B.StartGateway(t.A);
        AssertPing(t.A, t.B);
        string json = t.Iperf("-t 5");
        using var doc = JsonDocument.Parse(json);
        double bps = doc.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bits_per_second").GetDouble();
        Assert.True(bps > 1e6, $"TCP through the tunnel reached only {bps} bit/s");
    }

    [SkippableFact]
    public void PeerAddedWithWgSetCarriesTraffic()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        t.B.StartWireguardGo(t.A, endpoint: false);
        // A starts knowing no peer at all.
        string conf = t.TempFile("nopeers.conf", $"[Interface]\nPrivateKey = {t.A.PrivateKey.ToBase64()}\nListenPort = {t.A.Port}\nAddress = {t.A.TunnelAddress}/24\n");
        var process = t.StartProcess(t.A.Ns, $"dotnet {Topology.GatewayDll} up {conf} --interface {t.A.Interface} --metrics off");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(t.A.UapiSocket) && !process.HasExited && watch.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(20);
        }
        Assert.DoesNotContain("peer:", t.A.Exec($"wg show {t.A.Interface}"));
        t.A.Exec($"wg set {t.A.Interface} peer {t.B.PublicKey.ToBase64()} allowed-ips {t.B.TunnelAddress}/32 endpoint {t.B.Underlay}:{t.B.Port}");
        Assert.Contains($"peer: {t.B.PublicKey.ToBase64()}", t.A.Exec($"wg show {t.A.Interface}"));
        AssertPing(t.A, t.B);
        // And removed again, traffic stops being routed to it.
        t.A.Exec($"wg set {t.A.Interface} peer {t.B.PublicKey.ToBase64()} remove");
        Assert.DoesNotContain("peer:", t.A.Exec($"wg show {t.A.Interface}"));
    }

    [SkippableFact]
    public void GatewayFollowsAGatewayPeerThatRoams()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        t.A.StartGateway(t.B, endpoint: false);
        t.B.StartGateway(t.A);
        AssertPing(t.B, t.A);
        // B's underlay address changes; its next authenticated packet tells A where it went.
        Roam(t, t.B, $"vb{t.Id}", "192.168.241.3");
        AssertPing(t.B, t.A);
        Assert.Contains("endpoint: 192.168.241.3:", t.A.Exec($"wg show {t.A.Interface}"));
        AssertPing(t.A, t.B);
    }

    [SkippableTheory]
    [InlineData(WireGuardGoBuilds.Bookworm)]
    [InlineData(WireGuardGoBuilds.Backports)]
    public void WireguardGoFollowsAGatewayThatRoams(string version)
    {
        SkipUnlessPossible();
        using var t = new Topology();
        t.A.StartGateway(t.B);
        t.B.StartWireguardGo(t.A, endpoint: false, version: version);
        AssertPing(t.A, t.B);
        Roam(t, t.A, $"va{t.Id}", "192.168.241.4");
        AssertPing(t.A, t.B);
        Assert.Contains("endpoint: 192.168.241.4:", t.B.Exec($"wg show {t.B.Interface}"));
        AssertPing(t.B, t.A);
    }

    private static void Roam(Topology t, Topology.Side side, string device, string newAddress) =>
        side.Exec($"sh -c 'ip addr del {side.Underlay}/24 dev {device} && ip addr add {newAddress}/24 dev {device}'");

    [SkippableFact]
    public void TrafficRecoversAfterOneSideRestarts()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        t.A.StartGateway(t.B);
        t.B.StartGateway(t.A);
        AssertPing(t.A, t.B);
        t.A.Stop();
        Assert.False(File.Exists(t.A.UapiSocket), "a clean shutdown removes the UAPI socket");
        Assert.Contains("does not exist", t.A.Exec($"ip link show {t.A.Interface}", check: false));
        t.A.StartGateway(t.B);
        AssertPing(t.A, t.B);
        AssertPing(t.B, t.A);
    }

    [SkippableFact]
    public void ABrokenConfigIsOneLineAndLeavesNothingBehind()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        string conf = t.TempFile("bad.conf", "[Interface]\nPrivateKey = nope\n");
        string output = t.A.Exec($"dotnet {Topology.GatewayDll} up {conf} --interface {t.A.Interface} --metrics off; echo exit=$?", check: false);
        Assert.Contains($"{conf}:2: PrivateKey is not a base64 WireGuard key", output);
        Assert.Contains("exit=1", output);
        Assert.DoesNotContain("   at ", output);
        Assert.Contains("does not exist", t.A.Exec($"ip link show {t.A.Interface}", check: false));
        Assert.False(File.Exists(t.A.UapiSocket));
    }
}

[Collection("daemon")]
public class DaemonOperationsTests
{
    private static void SkipUnlessPossible() => Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());

    private static long LatestHandshake(Topology.Side side, string peer)
    {
        foreach (var line in side.Exec($"wg show {side.Interface} latest-handshakes").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split('\t');
            if (parts[0] == peer)
            {
                return long.Parse(parts[1]);
            }
        }
        return -1;
    }

    private static void WaitForLog(Topology.Side side, string text) => side.WaitForLog(text);

    /// <summary>Two gateways with a session A to B; returns A's config file and the handshake time.</summary>
    private static (string ConfA, long Handshake) StartPairWithSession(Topology t)
    {
        string confA = t.A.StartGateway(t.B);
        t.B.StartGateway(t.A);
        Assert.Contains("3 received", t.A.Exec($"ping -c 3 -i 0.2 -W 3 {t.B.TunnelAddress}", check: false));
        long handshake = LatestHandshake(t.A, t.B.PublicKey.ToBase64());
        Assert.True(handshake > 0);
        return (confA, handshake);
    }

    [SkippableFact]
    public void SighupReloadsTheFileWithoutDroppingSessionsAndABrokenFileChangesNothing()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        var (confA, handshake) = StartPairWithSession(t);

        using var extra = Gateway.Crypto.WireGuardKey.GeneratePrivate();
        using var extraPublic = extra.DerivePublic();
        File.AppendAllText(confA, $"\n[Peer]\nPublicKey = {extraPublic.ToBase64()}\nAllowedIPs = 10.241.0.99/32\n");
        Sh.Run($"kill -HUP {t.A.Process!.Id}");
        WaitForLog(t.A, "reloaded from");
        string show = t.A.Exec($"wg show {t.A.Interface}");
        Assert.Contains($"peer: {extraPublic.ToBase64()}", show);
        Assert.Contains("10.241.0.99", t.A.Exec("ip route"));
        // The established session survived: same handshake, traffic flows at once.
        Assert.Equal(handshake, LatestHandshake(t.A, t.B.PublicKey.ToBase64()));
        Assert.Contains("3 received", t.A.Exec($"ping -c 3 -i 0.2 -W 3 {t.B.TunnelAddress}", check: false));

        File.AppendAllText(confA, "\nThisIsNotAKey = 1\n");
        Sh.Run($"kill -HUP {t.A.Process!.Id}");
        WaitForLog(t.A, "reload failed, previous configuration stays in force");
        Assert.Contains("unknown key 'ThisIsNotAKey'", t.A.Log);
        Assert.Contains($"peer: {extraPublic.ToBase64()}", t.A.Exec($"wg show {t.A.Interface}"));
        Assert.False(t.A.Process!.HasExited);
    }

    [SkippableFact]
    public void AReloadWhoseRoutesFailIsUndoneAsAWhole()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        var (confA, handshake) = StartPairWithSession(t);

        // The kernel refuses IPv6 routes through an interface with IPv6 disabled: the new peer's
        // IPv4 route goes in, its IPv6 route fails, and the whole reload must be taken back.
        t.A.Exec($"sysctl -qw net.ipv6.conf.{t.A.Interface}.disable_ipv6=1");
        using var extra = Gateway.Crypto.WireGuardKey.GeneratePrivate();
        using var extraPublic = extra.DerivePublic();
        File.AppendAllText(confA, $"\n[Peer]\nPublicKey = {extraPublic.ToBase64()}\nAllowedIPs = 10.241.0.77/32, fd00:77::/64\n");
        Sh.Run($"kill -HUP {t.A.Process!.Id}");
        WaitForLog(t.A, "reload failed, previous configuration stays in force");
        Assert.Contains("fd00:77::/64", t.A.Log);
        Assert.DoesNotContain(extraPublic.ToBase64(), t.A.Exec($"wg show {t.A.Interface}"));
        Assert.DoesNotContain("10.241.0.77", t.A.Exec("ip route"));
        Assert.Equal(handshake, LatestHandshake(t.A, t.B.PublicKey.ToBase64()));
        Assert.Contains("3 received", t.A.Exec($"ping -c 3 -i 0.2 -W 3 {t.B.TunnelAddress}", check: false));
        Assert.False(t.A.Process!.HasExited);
    }

    [SkippableFact]
    public void ServesPrometheusMetricsAndWgShowconf()
    {
        SkipUnlessPossible();
        using var t = new Topology();
        t.A.StartGateway(t.B, metrics: "127.0.0.1:9962");
        t.B.StartWireguardGo(t.A);
        Assert.Contains("3 received", t.A.Exec($"ping -c 3 -i 0.2 -W 3 {t.B.TunnelAddress}", check: false));
        string metrics = t.A.Exec("bash -c 'exec 3<>/dev/tcp/127.0.0.1/9962; printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'");
        Assert.Contains("HTTP/1.1 200 OK", metrics);
        Assert.Matches($"gateway_peer_tx_bytes_total{{interface=\"{t.A.Interface}\",peer=\"[^\"]+\"}} [1-9][0-9]*", metrics);
        Assert.Matches($"gateway_peer_last_handshake_seconds{{interface=\"{t.A.Interface}\",peer=\"[^\"]+\"}} [0-9.]+", metrics);
        Assert.Contains("gateway_drop_count_total{", metrics);

        string conf = t.A.Exec($"wg showconf {t.A.Interface}");
        Assert.Contains($"PrivateKey = {t.A.PrivateKey.ToBase64()}", conf);
        Assert.Contains($"PublicKey = {t.B.PublicKey.ToBase64()}", conf);
        Assert.Contains($"AllowedIPs = {t.B.TunnelAddress}/32", conf);
    }
}

[Collection("daemon")]
public class DaemonUnderlayTests
{
    [SkippableFact]
    public void EveryUnderlayDatagramIsWireGuardAndTheAuditSaysEncrypted()
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        Skip.IfNot(File.Exists("/usr/bin/tcpdump") || File.Exists("/usr/sbin/tcpdump"), "needs tcpdump (scripts/setup.sh installs it)");
        using var t = new Topology();
        t.A.StartGateway(t.B);
        t.B.StartGateway(t.A);
        string pcap = t.TempFile("underlay.pcap", "");
        var capture = t.StartProcess(t.A.Ns, $"tcpdump --immediate-mode -i va{t.Id} -U -s 0 -w {pcap}");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        // tcpdump reports when it is listening; wait for that line (another process, not protocol time).
        while (!t.Logs[capture].ToString().Contains("listening on", StringComparison.Ordinal) && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(20);
        }
        Assert.Contains("5 received", t.A.Exec($"ping -c 5 -i 0.2 -W 3 -s 1200 {t.B.TunnelAddress}", check: false));
        Assert.Contains("5 received", t.B.Exec($"ping -c 5 -i 0.2 -W 3 {t.A.TunnelAddress}", check: false));
        Sh.Run($"kill -INT {capture.Id}");
        capture.WaitForExit(10_000);

        var report = Gateway.Datapath.Audit.CaptureAuditor.AuditFile(pcap);
        Assert.Equal("ENCRYPTED", report.Verdict);
        long wireGuard = report.Counts[Gateway.Datapath.Audit.PacketClass.WireGuard];
        Assert.True(wireGuard >= 20, $"expected at least 20 WireGuard datagrams, saw {wireGuard}:\n{Sh.Run($"tcpdump -nr {pcap}", check: false)}\n{t.Logs[capture]}");
        // Everything UDP on the underlay is WireGuard (ARP may appear as 'other'); no plaintext.
        Assert.Equal(0, report.Counts[Gateway.Datapath.Audit.PacketClass.PlaintextCluster]);
        Assert.Equal(0, report.Counts[Gateway.Datapath.Audit.PacketClass.PlaintextOverlay]);
        Assert.Equal(report.TotalPackets, wireGuard + report.Counts[Gateway.Datapath.Audit.PacketClass.Other]);
        Assert.Single(report.WireGuardFlows);
        Assert.True(report.WireGuardFlows[0].TransportMessages >= 20);
    }
}

[Collection("daemon")]
public class DaemonIpv6UnderlayTests
{
    [SkippableTheory]
    [InlineData(WireGuardGoBuilds.Bookworm)]
    [InlineData(WireGuardGoBuilds.Backports)]
    public void GatewayToWireguardGoOverAnIpv6Underlay(string version)
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        using var t = new Topology();
        t.A.Exec($"ip -6 addr add fd00:241::1/64 dev va{t.Id} nodad");
        t.B.Exec($"ip -6 addr add fd00:241::2/64 dev vb{t.Id} nodad");
        t.B.StartWireguardGo(t.A, endpoint: false, version: version);
        string conf = t.TempFile("v6.conf", $"""
            [Interface]
            PrivateKey = {t.A.PrivateKey.ToBase64()}
            ListenPort = {t.A.Port}
            Address = {t.A.TunnelAddress}/24, fd00:a::1/64

            [Peer]
            PublicKey = {t.B.PublicKey.ToBase64()}
            AllowedIPs = {t.B.TunnelAddress}/32, fd00:a::2/128
            Endpoint = [fd00:241::2]:{t.B.Port}
            """);
        t.B.Exec($"wg set {t.B.Interface} peer {t.A.PublicKey.ToBase64()} allowed-ips {t.A.TunnelAddress}/32,fd00:a::1/128");
        t.B.Exec($"ip -6 addr add fd00:a::2/64 dev {t.B.Interface} nodad");
        var gateway = t.StartProcess(t.A.Ns, $"dotnet {Topology.GatewayDll} up {conf} --interface {t.A.Interface} --metrics off");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(t.A.UapiSocket) && !gateway.HasExited && watch.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(20); // another process starting, not protocol time
        }
        Assert.Contains("3 received", t.A.Exec($"ping -c 3 -i 0.2 -W 3 {t.B.TunnelAddress}", check: false));
        // IPv6 inside the tunnel as well as under it.
        Assert.Contains("3 received", t.A.Exec("ping -6 -c 3 -i 0.2 -W 3 fd00:a::2", check: false));
        Assert.Contains("endpoint: [fd00:241::1]:", t.B.Exec($"wg show {t.B.Interface}"));
    }
}
