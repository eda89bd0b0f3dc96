using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Gateway.Node.Metrics;

/// <summary>Bounds of the metrics endpoint: it faces whatever can reach its address.</summary>
public sealed record MetricsServerLimits
{
    /// <summary>Longest request line ("GET /metrics HTTP/1.1"); longer gets 414.</summary>
    public int MaxRequestLine { get; init; } = 2048;
    /// <summary>Largest request head (request line and headers); larger gets 431.</summary>
    public int MaxRequestHead { get; init; } = 8192;
    /// <summary>Connections served at once; more are answered 503 and closed.</summary>
    public int MaxConnections { get; init; } = 16;
    /// <summary>Time a client has to send its request head (slow senders are cut off).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// A minimal HTTP/1.1 endpoint that serves Prometheus text exposition at <c>/metrics</c>.
/// It binds to loopback by default (127.0.0.1:9962, Cilium's agent metrics port) and answers
/// one request per connection; anything but GET /metrics gets 404. Requests are read into a
/// fixed buffer with the bounds of <see cref="MetricsServerLimits"/>, so no client can make it
/// hold more than a few kilobytes per connection or more than a few connections.
/// </summary>
public sealed class MetricsServer : IAsyncDisposable
{
    public const int DefaultPort = 9962;

    private readonly TcpListener _listener;
    private readonly Func<string> _render;
    private readonly MetricsServerLimits _limits;
    private readonly SemaphoreSlim _slots;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    private MetricsServer(TcpListener listener, Func<string> render, MetricsServerLimits limits)
    {
        _listener = listener;
        _render = render;
        _limits = limits;
        _slots = new SemaphoreSlim(limits.MaxConnections, limits.MaxConnections);
        _loop = Task.Run(LoopAsync);
    }

    public IPEndPoint LocalEndpoint => (IPEndPoint)_listener.LocalEndpoint;

    /// <param name="render">Produces the metrics text; called once per scrape.</param>
    public static MetricsServer Start(IPEndPoint endpoint, Func<string> render, MetricsServerLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(render);
        limits ??= new MetricsServerLimits();
        var listener = new TcpListener(endpoint);
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            throw new IOException($"cannot listen for metrics on {endpoint}: {e.Message}", e);
        }
        return new MetricsServer(listener, render, limits);
    }

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            if (!_slots.Wait(0))
            {
                _ = Task.Run(() => RefuseAsync(client));
                continue;
            }
            _ = Task.Run(async () =>
            {
                try
                {
                    await ServeAsync(client).ConfigureAwait(false);
                }
                finally
                {
                    _slots.Release();
                }
            });
        }
    }

    private async Task RefuseAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                timeout.CancelAfter(_limits.RequestTimeout);
                await WriteAsync(client.GetStream(), "503 Service Unavailable", "too many connections\n", timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
            }
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                timeout.CancelAfter(_limits.RequestTimeout);
                var stream = client.GetStream();
                var (status, requestLine) = await ReadHeadAsync(stream, timeout.Token).ConfigureAwait(false);
                if (status is not null)
                {
                    await WriteAsync(stream, status, "bad request\n", timeout.Token).ConfigureAwait(false);
                    await LingerAsync(client, stream, timeout.Token).ConfigureAwait(false);
                    return;
                }
                string[] parts = requestLine.Split(' ');
                bool ok = parts.Length >= 2 && parts[0] == "GET" && (parts[1] == "/metrics" || parts[1].StartsWith("/metrics?", StringComparison.Ordinal));
                if (!ok)
                {
                    await WriteAsync(stream, "404 Not Found", "not found; metrics are at /metrics\n", timeout.Token).ConfigureAwait(false);
                    return;
                }
                await WriteAsync(stream, "200 OK", _render(), timeout.Token, "text/plain; version=0.0.4; charset=utf-8").ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>
    /// Reads the request head (up to the blank line) into a buffer of <see cref="MetricsServerLimits.MaxRequestHead"/>
    /// bytes. Returns an error status for a head that breaks the bounds, else the request line.
    /// </summary>
    private async Task<(string? Status, string RequestLine)> ReadHeadAsync(NetworkStream stream, CancellationToken token)
    {
        byte[] buffer = new byte[_limits.MaxRequestHead];
        int filled = 0;
        while (true)
        {
            int lineEnd = buffer.AsSpan(0, filled).IndexOf((byte)'\n');
            if (lineEnd < 0 ? filled > _limits.MaxRequestLine : lineEnd > _limits.MaxRequestLine)
            {
                return ("414 URI Too Long", "");
            }
            int headEnd = EndOfHead(buffer.AsSpan(0, filled));
            if (headEnd >= 0)
            {
                string line = Encoding.ASCII.GetString(buffer, 0, lineEnd).TrimEnd('\r');
                return (null, line);
            }
            if (filled == buffer.Length)
            {
                return ("431 Request Header Fields Too Large", "");
            }
            int n = await stream.ReadAsync(buffer.AsMemory(filled), token).ConfigureAwait(false);
            if (n == 0)
            {
                return ("400 Bad Request", "");
            }
            filled += n;
        }
    }

    /// <summary>
    /// After an error answer to a request not read to its end: stop sending, then read and discard
    /// what the client still sends (bounded in bytes and by the request timeout) so that closing
    /// does not reset the connection and destroy the answer before the client reads it.
    /// </summary>
    private static async Task LingerAsync(TcpClient client, NetworkStream stream, CancellationToken token)
    {
        client.Client.Shutdown(SocketShutdown.Send);
        byte[] sink = new byte[4096];
        for (int total = 0; total < 1 << 20;)
        {
            int n = await stream.ReadAsync(sink, token).ConfigureAwait(false);
            if (n == 0)
            {
                return;
            }
            total += n;
        }
    }

    /// <summary>Index just past the blank line that ends an HTTP head ("\r\n\r\n" or "\n\n"), or -1.</summary>
    private static int EndOfHead(ReadOnlySpan<byte> data)
    {
        int crlf = data.IndexOf("\r\n\r\n"u8);
        int lf = data.IndexOf("\n\n"u8);
        if (crlf < 0 && lf < 0)
        {
            return -1;
        }
        return crlf >= 0 && (lf < 0 || crlf < lf) ? crlf + 4 : lf + 2;
    }

    private static async Task WriteAsync(NetworkStream stream, string status, string body, CancellationToken token,
        string contentType = "text/plain; charset=utf-8")
    {
        byte[] bodyBytes = Encoding.UTF8.GetBytes(body);
        string head = $"HTTP/1.1 {status}\r\nContent-Type: {contentType}\r\nContent-Length: {bodyBytes.Length}\r\nConnection: close\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head), token).ConfigureAwait(false);
        await stream.WriteAsync(bodyBytes, token).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _stop.Dispose();
    }
}
