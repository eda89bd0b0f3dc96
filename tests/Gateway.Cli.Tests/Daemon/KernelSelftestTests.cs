using System.Text.Json;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// Scenarios of the Linux kernel's WireGuard selftest (tools/testing/selftests/wireguard/netns.sh)
/// that the other daemon tests did not cover, between `gateway up` and stock wireguard-go
/// (see docs/testing.md for the full list).
/// </summary>
[Collection("daemon")]
public class KernelSelftestTests
{
    private static void AssertPing(Topology.Side from, Topology.Side to)
    {
        string output = from.Exec($"ping -c 3 -i 0.2 -W 3 {to.TunnelAddress}", check: false);
        Assert.True(output.Contains("3 received", StringComparison.Ordinal), $"ping failed:\n{output}\n{from.Log}");
    }

    /// <summary>Gateway in A, wireguard-go in B, the tunnel proven by a ping.</summary>
    private static Topology GatewayAndWireguardGo()
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        var t = new Topology();
        try
        {
            t.B.StartWireguardGo(t.A, endpoint: false);
            t.A.StartGateway(t.B);
            AssertPing(t.A, t.B);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    [SkippableFact]
    public void UdpAtUnlimitedRateThenTheTunnelStillWorks()
    {
        // netns.sh: iperf3 -Z -t 3 -b 0 -u (UDP as fast as the sender can go).
        using var t = GatewayAndWireguardGo();
        string json = t.Iperf("-u -b 0 -t 2", complete: "\"sum\"");
        using var doc = JsonDocument.Parse(json);
        JsonElement sum = doc.RootElement.GetProperty("end").GetProperty("sum");
        Assert.True(sum.GetProperty("bytes").GetInt64() > 1_000_000, $"only {sum.GetProperty("bytes")} bytes of UDP went through");
        // Overload (drops are allowed for UDP) leaves the tunnel working.
        AssertPing(t.A, t.B);
        AssertPing(t.B, t.A);
    }

    [SkippableFact]
    public void ParallelTcpStreamsAllComplete()
    {
        // netns.sh: 4, 5 and 50 TCP streams at once; here 8 streams in one iperf3 run.
        using var t = GatewayAndWireguardGo();
        string json = t.Iperf("-P 8 -t 2");
        using var doc = JsonDocument.Parse(json);
        var streams = doc.RootElement.GetProperty("end").GetProperty("streams");
        Assert.Equal(8, streams.GetArrayLength());
        foreach (JsonElement stream in streams.EnumerateArray())
        {
            Assert.True(stream.GetProperty("receiver").GetProperty("bytes").GetInt64() > 0, "a stream moved nothing");
        }
    }
}
