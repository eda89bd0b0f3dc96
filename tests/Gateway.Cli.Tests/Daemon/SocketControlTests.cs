namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// The daemon's socket follows the interface's fwmark and listen port: `FwMark` in the file and
/// `wg set IFACE fwmark` set SO_MARK (seen by `ss -e`), and `wg set IFACE listen-port N` moves the
/// running socket, after which traffic flows on the new port. Root only.
/// </summary>
[Collection("daemon")]
public class SocketControlTests
{
    private static string Udp(Topology.Side side, int port) => side.Exec($"ss -uanpe sport = :{port}");

    [SkippableFact]
    public void FwMarkAndListenPortSetWithWgTakeEffectOnTheRunningSocket()
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        using var t = new Topology();
        t.B.StartWireguardGo(t.A);
        t.A.StartGateway(t.B, extraInterface: "FwMark = 0x5187");
        Assert.Contains("fwmark:0x5187", Udp(t.A, t.A.Port));
        Assert.Contains("fwmark: 0x5187", t.A.Exec($"wg show {t.A.Interface}"));
        Ping(t.A, t.B);

        t.A.Exec($"wg set {t.A.Interface} fwmark 0x42");
        Assert.Contains("fwmark:0x42", Udp(t.A, t.A.Port));

        int moved = t.A.Port + 1000;
        t.A.Exec($"wg set {t.A.Interface} listen-port {moved}");
        Assert.Contains($"listening port: {moved}", t.A.Exec($"wg show {t.A.Interface}"));
        string onNewPort = Udp(t.A, moved);
        Assert.Contains("dotnet", onNewPort);
        Assert.Contains("fwmark:0x42", onNewPort);
        Assert.DoesNotContain("dotnet", Udp(t.A, t.A.Port));

        // A's next packet comes from the new port; wireguard-go follows it (roaming) and both
        // directions work again.
        Ping(t.A, t.B);
        Assert.Contains($"endpoint: {t.A.Underlay}:{moved}", t.B.Exec($"wg show {t.B.Interface}"));
        Ping(t.B, t.A);

        // A port in use is refused and nothing changes.
        using var squatter = Gateway.Datapath.Devices.NetworkNamespace.Run(t.A.Ns,
            () => new System.Net.Sockets.UdpClient(moved + 1, System.Net.Sockets.AddressFamily.InterNetworkV6));
        string refused = t.A.Exec($"wg set {t.A.Interface} listen-port {moved + 1}", check: false);
        Assert.Contains("Address already in use", refused);
        Assert.Contains($"listening port: {moved}", t.A.Exec($"wg show {t.A.Interface}"));
        Ping(t.A, t.B);
    }

    private static void Ping(Topology.Side from, Topology.Side to)
    {
        string output = from.Exec($"ping -c 2 -i 0.2 -W 3 {to.TunnelAddress}", check: false);
        Assert.True(output.Contains("2 received", StringComparison.Ordinal),
            $"ping {from.Ns} -> {to.TunnelAddress} failed:\n{output}\n--- {from.Interface} log:\n{from.Log}\n--- {to.Interface} log:\n{to.Log}\n" +
            $"{from.Exec("ss -uanpe")}\n{to.Exec("ss -uanpe")}\n{from.Exec($"wg show {from.Interface}")}\n{to.Exec($"wg show {to.Interface}")}");
    }
}
