using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Hosting;
using Gateway.Node.Metrics;

namespace Gateway.Node.Tests.Metrics;

/// <summary>
/// Issue 14 item 5 for the metrics endpoint: whatever a client sends (a huge request line, a flood
/// of headers, more connections than allowed, a request trickled byte by byte), the endpoint answers
/// with an HTTP error or closes the connection, holds no more than a few kilobytes for it, and keeps
/// serving scrapes. Kestrel enforces the bounds (<see cref="PrometheusEndpointLimits"/>). Not run in
/// parallel with other tests: one of them measures the process's managed memory.
/// </summary>
[Collection(Name)]
public sealed class PrometheusEndpointBoundsTests : IDisposable
{
    public const string Name = "metrics endpoint bounds";

    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private readonly GatewayMeters _meters = new(() => "wg9");

    public PrometheusEndpointBoundsTests() =>
        _meters.Gauge(GatewayMeters.NodeArea, "gateway_handshake_queue_length", "Queue.", () => [_meters.Sample(1.0)]);

    public void Dispose() => _meters.Dispose();

    private static async Task<string> Scrape(Uri url)
    {
        using var http = new HttpClient { Timeout = Deadline };
        return await http.GetStringAsync(url);
    }

    /// <summary>Sends <paramref name="request"/> and reads the answer until the server closes the
    /// connection: the answer, or "" when the server reset the connection instead of answering.</summary>
    private static async Task<string> Exchange(IPEndPoint endpoint, byte[] request)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(endpoint);
        var stream = client.GetStream();
        using var timeout = new CancellationTokenSource(Deadline);
        try
        {
            await stream.WriteAsync(request, timeout.Token);
            var answer = new MemoryStream();
            await stream.CopyToAsync(answer, timeout.Token);
            return Encoding.ASCII.GetString(answer.ToArray());
        }
        catch (IOException e) when (e.InnerException is SocketException)
        {
            return "";
        }
    }

    [Fact]
    public async Task ARequestLineOverTheLimitIsRefusedWith414()
    {
        using var endpoint = PrometheusEndpointTests.StartOnFreePort(_meters);
        string answer = await Exchange(endpoint.Endpoint, Encoding.ASCII.GetBytes($"GET /metrics?{new string('a', 4096)} HTTP/1.1\r\nHost: x\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 414 ", answer);
        Assert.Contains("gateway_handshake_queue_length", await Scrape(endpoint.Url));
    }

    [Fact]
    public async Task AHugeRequestLineIsCutOffWithoutGrowingMemory()
    {
        using var endpoint = PrometheusEndpointTests.StartOnFreePort(_meters);
        await Scrape(endpoint.Url); // warm up: Kestrel's pools and the exporter's buffers exist before the measurement
        long before = GC.GetTotalMemory(forceFullCollection: true);

        // 16 MiB of request line, never ended: the server stops reading after the limit and closes.
        using var client = new TcpClient();
        await client.ConnectAsync(endpoint.Endpoint);
        var stream = client.GetStream();
        var chunk = Encoding.ASCII.GetBytes("GET /" + new string('a', 64 * 1024 - 5));
        long sent = 0;
        bool cutOff = false;
        using (var timeout = new CancellationTokenSource(Deadline))
        {
            try
            {
                for (int i = 0; i < 256; i++)
                {
                    await stream.WriteAsync(chunk, timeout.Token);
                    sent += chunk.Length;
                    chunk[0] = (byte)'a';
                }
            }
            catch (IOException)
            {
                cutOff = true;
            }
        }
        Assert.True(cutOff, $"the server took all {sent} bytes of one request line");
        long after = GC.GetTotalMemory(forceFullCollection: true);
        Assert.True(after - before < 4 << 20, $"managed memory grew by {after - before} bytes after {sent} bytes of request line");
        Assert.Contains("gateway_handshake_queue_length", await Scrape(endpoint.Url));
    }

    [Fact]
    public async Task HeadersOverTheLimitsAreRefusedWith431()
    {
        using var endpoint = PrometheusEndpointTests.StartOnFreePort(_meters);
        var large = new StringBuilder("GET /metrics HTTP/1.1\r\nHost: x\r\n");
        for (int i = 0; i < 20; i++)
        {
            large.Append($"X-Large-{i}: {new string('v', 1000)}\r\n"); // 20 KB > 8 KiB
        }
        Assert.StartsWith("HTTP/1.1 431 ", await Exchange(endpoint.Endpoint, Encoding.ASCII.GetBytes(large.Append("\r\n").ToString())));

        var many = new StringBuilder("GET /metrics HTTP/1.1\r\nHost: x\r\n");
        for (int i = 0; i < 40; i++)
        {
            many.Append($"X-{i}: v\r\n"); // 41 headers > 32
        }
        Assert.StartsWith("HTTP/1.1 431 ", await Exchange(endpoint.Endpoint, Encoding.ASCII.GetBytes(many.Append("\r\n").ToString())));

        // Request bodies are refused too (a scrape is a GET without one).
        string post = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        Assert.StartsWith("HTTP/1.1 405 ", await Exchange(endpoint.Endpoint, Encoding.ASCII.GetBytes(post)));
        string body = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        Assert.StartsWith("HTTP/1.1 413 ", await Exchange(endpoint.Endpoint, Encoding.ASCII.GetBytes(body)));
        Assert.Contains("gateway_handshake_queue_length", await Scrape(endpoint.Url));
    }

    [Fact]
    public async Task ConnectionsBeyondTheLimitAreRefusedAndIdleOnesTimeOut()
    {
        var limits = new PrometheusEndpointLimits { MaxConnections = 4, RequestHeadersTimeout = TimeSpan.FromSeconds(2) };
        using var endpoint = PrometheusEndpointTests.StartOnFreePort(_meters, limits);
        var idle = new List<TcpClient>();
        try
        {
            for (int i = 0; i < 4; i++)
            {
                var client = new TcpClient();
                idle.Add(client);
                await client.ConnectAsync(endpoint.Endpoint);
                await client.GetStream().WriteAsync(Encoding.ASCII.GetBytes("GET /metrics HTTP/1.1\r\n")); // never finished
            }
            // The fifth: the kernel accepts it, Kestrel closes it at once without an answer.
            Assert.Equal("", await Exchange(endpoint.Endpoint, Encoding.ASCII.GetBytes("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")));

            // The idle ones are closed by the request-headers timeout; then scrapes work again.
            using var timeout = new CancellationTokenSource(Deadline);
            foreach (var client in idle)
            {
                var buffer = new byte[256];
                int read;
                try
                {
                    read = await client.GetStream().ReadAsync(buffer, timeout.Token);
                }
                catch (IOException)
                {
                    read = 0;
                }
                string text = Encoding.ASCII.GetString(buffer, 0, read);
                Assert.True(read == 0 || text.StartsWith("HTTP/1.1 408 ", StringComparison.Ordinal), $"an idle connection got: {text}");
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

    [Fact]
    public async Task ARequestTrickledByteByByteIsClosedByTheHeadersTimeout()
    {
        var limits = new PrometheusEndpointLimits { RequestHeadersTimeout = TimeSpan.FromSeconds(2) };
        using var endpoint = PrometheusEndpointTests.StartOnFreePort(_meters, limits);
        using var client = new TcpClient();
        await client.ConnectAsync(endpoint.Endpoint);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("GET /metrics HTTP/1.1\r\nHost: x\r\n"));
        var answer = new byte[256];
        var read = stream.ReadAsync(answer).AsTask();
        var started = DateTime.UtcNow;
        int trickled = 0;
        // One header byte every 200 ms, never the end of the headers; the server must close first.
        while (!read.IsCompleted && DateTime.UtcNow - started < Deadline)
        {
            try
            {
                await stream.WriteAsync(new[] { (byte)'X' });
                trickled++;
            }
            catch (IOException)
            {
                break;
            }
            await Task.WhenAny(read, Task.Delay(200));
        }
        Assert.True(read.IsCompleted || await Task.WhenAny(read, Task.Delay(Deadline)) == read, $"still open after {trickled} trickled bytes");
        string text;
        try
        {
            text = Encoding.ASCII.GetString(answer, 0, await read);
        }
        catch (IOException)
        {
            text = ""; // reset: closed as well
        }
        Assert.True(text == "" || text.StartsWith("HTTP/1.1 408 ", StringComparison.Ordinal), $"after {trickled} trickled bytes: {text}");
        Assert.Contains("gateway_handshake_queue_length", await Scrape(endpoint.Url));
    }
}

[CollectionDefinition(PrometheusEndpointBoundsTests.Name, DisableParallelization = true)]
public sealed class PrometheusEndpointBoundsCollection;
