using System.Text.Json;
using System.Text.RegularExpressions;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// TUN offloads end to end: with them, the sender's kernel hands gateway TCP super-packets that it
/// cuts into segments, and the receiver's gateway writes runs of segments back as super-packets;
/// TCP through the tunnel works either way, and nothing is dropped as malformed.
/// </summary>
[Collection("daemon")]
public class TunOffloadTests
{
    private static long Metric(Topology.Side side, string name, string label)
    {
        string text = side.Exec("bash -c 'exec 3<>/dev/tcp/127.0.0.1/9962; printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'");
        var match = Regex.Match(text, $@"^{name}{{[^}}]*{Regex.Escape(label)}[^}}]*}} (\d+)", RegexOptions.Multiline);
        Assert.True(match.Success, $"{name} with {label} not in:\n{text}");
        return long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    private static double Tcp(Topology t)
    {
        using var doc = JsonDocument.Parse(t.Iperf("-t 2"));
        return doc.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bits_per_second").GetDouble();
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void TcpCrossesWithSuperPacketsOnBothSidesOrWithoutOffloads(bool offload)
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        using var t = new Topology();
        string options = $"--tun-offload {(offload ? "on" : "off")}";
        t.A.StartGateway(t.B, metrics: "127.0.0.1:9962", options: options);
        t.B.StartGateway(t.A, metrics: "127.0.0.1:9962", options: options);
        t.A.WaitForLog(offload ? "TUN offloads on" : "TUN offloads off");
        Assert.Contains("3 received", t.A.Exec($"ping -c 3 -i 0.2 -W 3 {t.B.TunnelAddress}", check: false));
        double bps = Tcp(t);
        Assert.True(bps > 1e6, $"TCP through the tunnel reached only {bps} bit/s");

        long read = Metric(t.A, "gateway_tun_super_packets_total", "direction=\"read\"");
        long written = Metric(t.B, "gateway_tun_super_packets_total", "direction=\"written\"");
        if (offload)
        {
            Assert.True(read > 0, "the sender read no TCP super-packets from its TUN device");
            Assert.True(written > 0, "the receiver wrote no coalesced super-packets to its TUN device");
        }
        else
        {
            Assert.Equal(0, read);
            Assert.Equal(0, written);
        }
        Assert.Equal(0, Metric(t.A, "gateway_drop_count_total", "reason=\"TunOffloadInvalid\""));
        Assert.Equal(0, Metric(t.B, "gateway_drop_count_total", "reason=\"TunOffloadInvalid\""));
        Assert.Equal(0, Metric(t.B, "gateway_drop_count_total", "reason=\"TunWriteFailed\""));
    }
}
