using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Node.Metrics;

namespace Gateway.Node.Tests.Metrics;

/// <summary>
/// Issue 14 item 5 for the metrics endpoint: many connections held open without finishing a
/// request leave the endpoint serving the next scrape. (The request-line bound the endpoint had
/// before it moved to OpenTelemetry's HttpListener exporter is not there: a 16 MiB request line
/// kept 26 MiB in the process; see docs/metrics.md.)
/// </summary>
public class PrometheusEndpointBoundsTests
{
    private static async Task<string> Scrape(Uri url)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        return await http.GetStringAsync(url);
    }

    [Fact]
    public async Task Many_idle_connections_do_not_stop_scrapes()
    {
        using var meters = new GatewayMeters(() => "wg9");
        meters.Gauge(GatewayMeters.NodeArea, "gateway_handshake_queue_length", "Queue.", () => [meters.Sample(1.0)]);
        using var endpoint = PrometheusEndpointTests.StartOnFreePort(meters);
        var idle = new List<TcpClient>();
        try
        {
            for (int i = 0; i < 300; i++)
            {
                var client = new TcpClient();
                await client.ConnectAsync(endpoint.Endpoint);
                await client.GetStream().WriteAsync(Encoding.ASCII.GetBytes("GET /metrics HTTP/1.1\r\n")); // never finished
                idle.Add(client);
            }
            Assert.Contains("gateway_handshake_queue_length", await Scrape(endpoint.Url));
        }
        finally
        {
            foreach (var client in idle)
            {
                client.Dispose();
            }
        }
    }
}
