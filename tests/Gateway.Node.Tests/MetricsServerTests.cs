using System.Net;
using System.Net.Sockets;
using System.Text;
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

    private static async Task<string> ExchangeAsync(IPEndPoint server, byte[] request)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(server);
        var stream = client.GetStream();
        try
        {
            await stream.WriteAsync(request);
        }
        catch (IOException)
        {
            // the server may answer and close before a huge request is fully sent
        }
        return await ReadToEndAsync(stream);
    }

    private static async Task<string> ReadToEndAsync(NetworkStream stream)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var text = new StringBuilder();
        byte[] buffer = new byte[4096];
        try
        {
            int n;
            while ((n = await stream.ReadAsync(buffer, deadline.Token)) > 0)
            {
                text.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }
        }
        catch (IOException)
        {
        }
        return text.ToString();
    }

    [Fact]
    public async Task OverlongRequestLineGets414AndHugeHeadersGet431()
    {
        await using var server = MetricsServer.Start(new IPEndPoint(IPAddress.Loopback, 0), () => "m 1\n");
        string longLine = await ExchangeAsync(server.LocalEndpoint, Encoding.ASCII.GetBytes("GET /metrics?" + new string('a', 100_000) + " HTTP/1.1\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 414 ", longLine);
        // A line with no end at all is cut off the same way.
        Assert.StartsWith("HTTP/1.1 414 ", await ExchangeAsync(server.LocalEndpoint, new byte[50_000]));
        var headers = new StringBuilder("GET /metrics HTTP/1.1\r\n");
        for (int i = 0; i < 1000; i++)
        {
            headers.Append($"X-Filler-{i}: {new string('b', 40)}\r\n");
        }
        string many = await ExchangeAsync(server.LocalEndpoint, Encoding.ASCII.GetBytes(headers.Append("\r\n").ToString()));
        Assert.StartsWith("HTTP/1.1 431 ", many);
        // Still serving.
        Assert.StartsWith("HTTP/1.1 200 OK", await ExchangeAsync(server.LocalEndpoint, "GET /metrics HTTP/1.0\r\n\r\n"u8.ToArray()));
    }

    [Fact]
    public async Task ASlowClientIsCutOffAfterTheRequestTimeout()
    {
        await using var server = MetricsServer.Start(new IPEndPoint(IPAddress.Loopback, 0), () => "m 1\n",
            new MetricsServerLimits { RequestTimeout = TimeSpan.FromMilliseconds(300) });
        using var client = new TcpClient();
        await client.ConnectAsync(server.LocalEndpoint);
        await client.GetStream().WriteAsync("GET /metr"u8.ToArray());
        // The server closes the connection without an answer (read returns end of stream).
        Assert.Equal("", await ReadToEndAsync(client.GetStream()));
    }

    [Fact]
    public async Task ConnectionsBeyondTheLimitGet503AndTheOthersAreStillServed()
    {
        await using var server = MetricsServer.Start(new IPEndPoint(IPAddress.Loopback, 0), () => "m 1\n",
            new MetricsServerLimits { MaxConnections = 2, RequestTimeout = TimeSpan.FromSeconds(30) });
        using var idle1 = new TcpClient();
        using var idle2 = new TcpClient();
        await idle1.ConnectAsync(server.LocalEndpoint);
        await idle2.ConnectAsync(server.LocalEndpoint);
        // Both idle connections hold a slot; the next one is refused at once.
        string third = await ExchangeAsync(server.LocalEndpoint, "GET /metrics HTTP/1.0\r\n\r\n"u8.ToArray());
        Assert.StartsWith("HTTP/1.1 503 ", third);
        await idle1.GetStream().WriteAsync("GET /metrics HTTP/1.0\r\n\r\n"u8.ToArray());
        Assert.StartsWith("HTTP/1.1 200 OK", await ReadToEndAsync(idle1.GetStream()));
        // The freed slot serves a new client.
        string later = "";
        for (int attempt = 0; attempt < 50 && !later.StartsWith("HTTP/1.1 200", StringComparison.Ordinal); attempt++)
        {
            if (attempt > 0)
            {
                await Task.Delay(20); // the server task releasing its slot (not protocol time)
            }
            later = await ExchangeAsync(server.LocalEndpoint, "GET /metrics HTTP/1.0\r\n\r\n"u8.ToArray());
        }
        Assert.StartsWith("HTTP/1.1 200 OK", later);
    }
}
