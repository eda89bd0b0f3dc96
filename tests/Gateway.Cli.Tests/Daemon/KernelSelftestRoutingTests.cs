using System.Diagnostics;
using System.Text.Json;
using Gateway.Crypto;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// The routing scenarios of the Linux kernel's WireGuard selftest (netns.sh) for `gateway up`:
/// IPv6 TCP inside the tunnel, WireGuard inside WireGuard, a peer whose endpoint lies inside
/// its own tunnel (bounded, no crash), onion routing that loops, wg-quick's fwmark policy
/// routing, and a source address that changes under a running tunnel. See docs/testing.md.
/// </summary>
[Collection("daemon")]
public class KernelSelftestRoutingTests
{
    private static Topology GatewayPair(string extraA = "", string extraPeerA = "", string extraB = "", string extraPeerB = "")
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        var t = new Topology();
        try
        {
            t.B.StartGateway(t.A, endpoint: false, extraInterface: extraB, extraPeer: extraPeerB);
            t.A.StartGateway(t.B, extraInterface: extraA, extraPeer: extraPeerA);
            t.A.WaitForLog(" up: listening");
            t.B.WaitForLog(" up: listening");
            PingEventually(t.A, t.B.TunnelAddress, t);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>Pings until one answer comes back (addresses finishing DAD, another process
    /// starting), bounded.</summary>
    private static void PingEventually(Topology.Side from, string address, Topology t, int seconds = 30, string source = "", int size = 56)
    {
        var watch = Stopwatch.StartNew();
        string output = "";
        while (watch.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            output = from.Exec($"ping -c 1 -W 2 -s {size} {(source.Length > 0 ? $"-I {source} " : "")}{address}", check: false);
            if (output.Contains("1 received", StringComparison.Ordinal))
            {
                return;
            }
            Thread.Sleep(200);
        }
        Assert.Fail($"no answer from {address}:\n{output}\n{t.A.Log}\n{t.B.Log}");
    }

    /// <summary>Another `gateway up` in <paramref name="ns"/>, up once it logs that it listens.</summary>
    private static Process StartExtraGateway(Topology t, string ns, string iface, string config)
    {
        string path = t.TempFile($"{iface}.conf", config);
        var process = t.StartProcess(ns, $"dotnet {Topology.GatewayDll} up {path} --interface {iface} --metrics off");
        var watch = Stopwatch.StartNew();
        while (!t.Logs[process].ToString().Contains(" up: listening", StringComparison.Ordinal))
        {
            Assert.True(!process.HasExited && watch.Elapsed < TimeSpan.FromSeconds(30), $"{iface} did not come up:\n{t.Logs[process]}");
            Thread.Sleep(50);
        }
        return process;
    }

    private static long TxBytes(Topology.Side side, string peer)
    {
        // `wg show IFACE transfer`: public key, rx bytes, tx bytes.
        foreach (string line in side.Exec($"wg show {side.Interface} transfer").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] fields = line.Split('\t');
            if (fields[0] == peer)
            {
                return long.Parse(fields[2]);
            }
        }
        throw new InvalidOperationException($"{peer} not on {side.Interface}");
    }

    [SkippableFact]
    public void TcpOverIpv6InsideTheTunnel()
    {
        // netns.sh: iperf3 -Z -t 3 -c fd00::2 (TCP over IPv6 inside the tunnel).
        using var t = GatewayPair(
            extraA: "Address = fd00:241::1/64", extraPeerA: "AllowedIPs = fd00:241::2/128",
            extraB: "Address = fd00:241::2/64", extraPeerB: "AllowedIPs = fd00:241::1/128");
        PingEventually(t.A, "fd00:241::2", t);
        var server = t.StartProcess(t.B.Ns, "iperf3 -s -1 -B fd00:241::2");
        string json = "";
        for (int attempt = 0; attempt < 50 && !json.Contains("\"sum_received\"", StringComparison.Ordinal); attempt++)
        {
            json = t.A.Exec("iperf3 -6 -c fd00:241::2 -t 2 -J", check: false);
            if (!json.Contains("\"sum_received\"", StringComparison.Ordinal))
            {
                Thread.Sleep(100); // the server is another process, still starting
            }
        }
        server.WaitForExit(10_000);
        using var doc = JsonDocument.Parse(json);
        long bytes = doc.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bytes").GetInt64();
        Assert.True(bytes > 1_000_000, $"only {bytes} bytes of TCP over IPv6 went through");
    }

    [SkippableFact]
    public void WireGuardRoutedThroughWireGuard()
    {
        // netns.sh: wg1 (192.168.241.x) runs over wg0 (fd00::5:x): its endpoint is inside wg0.
        using var t = GatewayPair();
        using var innerA = WireGuardKey.GeneratePrivate();
        using var innerB = WireGuardKey.GeneratePrivate();
        using var innerAPublic = innerA.DerivePublic();
        using var innerBPublic = innerB.DerivePublic();
        string ifA = $"wgia{t.Id}", ifB = $"wgib{t.Id}";
        StartExtraGateway(t, t.B.Ns, ifB, $"""
            [Interface]
            PrivateKey = {innerB.ToBase64()}
            ListenPort = 5
            Address = 10.242.0.2/24
            MTU = 1340

            [Peer]
            PublicKey = {innerAPublic.ToBase64()}
            AllowedIPs = 10.242.0.1/32
            """);
        StartExtraGateway(t, t.A.Ns, ifA, $"""
            [Interface]
            PrivateKey = {innerA.ToBase64()}
            ListenPort = 5
            Address = 10.242.0.1/24
            MTU = 1340

            [Peer]
            PublicKey = {innerBPublic.ToBase64()}
            AllowedIPs = 10.242.0.2/32
            Endpoint = {t.B.TunnelAddress}:5
            """);
        long outerBefore = TxBytes(t.A, t.B.PublicKey.ToBase64());
        PingEventually(t.A, "10.242.0.2", t);
        // Five answered 1200-byte pings, each retried on a loaded machine (bounded).
        for (int i = 0; i < 5; i++)
        {
            PingEventually(t.A, "10.242.0.2", t, size: 1200);
        }
        // The inner tunnel's datagrams went through the outer tunnel.
        Assert.True(TxBytes(t.A, t.B.PublicKey.ToBase64()) - outerBefore > 5 * 1200, "the inner tunnel bypassed the outer one");
    }

    [SkippableFact]
    public void APeerWhoseEndpointIsInsideItsOwnTunnelStaysBounded()
    {
        // netns.sh: the endpoint moves into the tunnel (192.168.241.2:7), the peer is gone; ten
        // flood pings must not turn into an unbounded stream (< 70,000 bytes sent in a second).
        using var t = GatewayPair();
        t.B.Stop();
        string peer = t.B.PublicKey.ToBase64();
        t.A.Exec($"wg set {t.A.Interface} peer {peer} endpoint {t.B.TunnelAddress}:7");
        long before = TxBytes(t.A, peer);
        t.A.Exec($"ping -W 1 -c 10 -f {t.B.TunnelAddress}", check: false);
        Thread.Sleep(1000); // netns.sh's second for the loop to show itself
        long after = TxBytes(t.A, peer);
        Assert.True(after - before < 70_000, $"{after - before} bytes sent into the loop\n{t.A.Log}");
        Assert.False(t.A.Process!.HasExited, t.A.Log);
    }

    [SkippableFact]
    public void OnionRoutingThatLoopsDoesNotCrash()
    {
        // netns.sh: a third peer reached through the first tunnel (onion), then its endpoint moved
        // inside its own tunnel while nothing answers there: pings fail, the daemon lives on.
        using var t = GatewayPair();
        using var onion = WireGuardKey.GeneratePrivate();
        using var onionPublic = onion.DerivePublic();
        string onionIf = $"wgo{t.Id}";
        var onionProcess = StartExtraGateway(t, t.B.Ns, onionIf, $"""
            [Interface]
            PrivateKey = {onion.ToBase64()}
            ListenPort = 5
            Address = 10.243.0.2/24

            [Peer]
            PublicKey = {t.A.PublicKey.ToBase64()}
            AllowedIPs = 10.243.0.1/32
            """);
        t.A.Exec($"ip addr add 10.243.0.1/24 dev {t.A.Interface}");
        t.A.Exec($"wg set {t.A.Interface} peer {onionPublic.ToBase64()} allowed-ips 10.243.0.2/32 endpoint {t.B.TunnelAddress}:5");
        // The peer's route has no source of its own: speak from the onion's address, the only
        // one the onion peer allows.
        PingEventually(t.A, "10.243.0.2", t, source: "10.243.0.1");

        onionProcess.Kill(entireProcessTree: true);
        onionProcess.WaitForExit(10_000);
        t.A.Exec($"wg set {t.A.Interface} peer {onionPublic.ToBase64()} endpoint 10.243.0.2:5");
        string ping = t.A.Exec("ping -W 1 -c 1 -I 10.243.0.1 10.243.0.2", check: false);
        Assert.DoesNotContain("1 received", ping);
        Assert.False(t.A.Process!.HasExited, t.A.Log);
        t.A.Exec($"wg set {t.A.Interface} peer {onionPublic.ToBase64()} remove");
        PingEventually(t.A, t.B.TunnelAddress, t);
    }

    [SkippableFact]
    public void WgQuickPolicyRoutingWithFwMark()
    {
        // netns.sh: fwmark 51820, a default route through the tunnel in table 51820, "not fwmark"
        // and "suppress_prefixlength 0" rules; flood pings to an address behind the peer. The
        // daemon's own datagrams carry the mark (SO_MARK) and so leave by the underlay.
        using var t = GatewayPair(extraA: "FwMark = 51820\nTable = off", extraPeerA: "AllowedIPs = 0.0.0.0/0");
        t.B.Exec($"ip addr add 192.168.99.7/32 dev {t.B.Interface}");
        t.A.Exec($"ip -4 route add default dev {t.A.Interface} table 51820");
        t.A.Exec("ip -4 rule add not fwmark 51820 table 51820");
        t.A.Exec("ip -4 rule add table main suppress_prefixlength 0");
        string flood = t.A.Exec("ping -W 1 -c 100 -f 192.168.99.7", check: false);
        Assert.True(flood.Contains("100 received", StringComparison.Ordinal), $"{flood}\n{t.A.Log}");
        // sk_bound_dev_if: a ping bound to the interface takes the same way.
        string bound = t.A.Exec($"ping -I {t.A.Interface} -c 1 -W 2 192.168.99.7", check: false);
        Assert.True(bound.Contains("1 received", StringComparison.Ordinal), bound);
    }

    [SkippableFact]
    public void TheTunnelFollowsItsUnderlayAddressWhenTheOldOneIsRemoved()
    {
        // netns.sh (source address stickiness, first part): a new underlay address is added and the
        // one in use removed; the tunnel must not stick to the address that is gone.
        using var t = GatewayPair();
        string veth = $"va{t.Id}";
        // As netns.sh: the new address is a secondary that must outlive the primary's removal.
        t.A.Exec($"sysctl -qw net.ipv4.conf.{veth}.promote_secondaries=1");
        t.A.Exec($"ip addr add 192.168.241.10/24 dev {veth}");
        t.A.Exec($"ip addr del {t.A.Underlay}/24 dev {veth}");
        PingEventually(t.A, t.B.TunnelAddress, t, seconds: 20);
        string endpoints = t.B.Exec($"wg show {t.B.Interface} endpoints");
        Assert.Contains("192.168.241.10:", endpoints);
    }
}
