using System.Net;
using Gateway.Node.Metrics;

namespace Gateway.Node.Tests;

public class MetricsServerTests
{
    [Fact]
    public async Task ServesPrometheusTextOnLoopback()
    {
        int scrapes = 0;
        await using var server = MetricsServer.Start(new IPEndPoint(IPAddress.Loopback, 0), () =>
        {
            scrapes++;
            return new PrometheusText()
                .Describe("gateway_peer_rx_bytes_total", "counter", "Bytes received from a peer.")
                .Sample("gateway_peer_rx_bytes_total", 1234, ("peer", "abc\"d"))
                .ToString();
        });
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{server.LocalEndpoint.Port}") };
        var response = await http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType);
        string body = await response.Content.ReadAsStringAsync();
        Assert.Equal(
            "# HELP gateway_peer_rx_bytes_total Bytes received from a peer.\n" +
            "# TYPE gateway_peer_rx_bytes_total counter\n" +
            "gateway_peer_rx_bytes_total{peer=\"abc\\\"d\"} 1234\n", body);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/other")).StatusCode);
        Assert.Equal(1, scrapes);
    }

    [Fact]
    public async Task APortInUseIsAClearError()
    {
        await using var first = MetricsServer.Start(new IPEndPoint(IPAddress.Loopback, 0), () => "");
        var e = Assert.Throws<IOException>(() => MetricsServer.Start(first.LocalEndpoint, () => ""));
        Assert.Contains("cannot listen for metrics", e.Message);
    }
}
