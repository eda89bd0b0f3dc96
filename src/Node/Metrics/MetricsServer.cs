using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Gateway.Node.Metrics;

/// <summary>
/// A minimal HTTP/1.1 endpoint that serves Prometheus text exposition at <c>/metrics</c>.
/// It binds to loopback by default (127.0.0.1:9962, Cilium's agent metrics port) and answers
/// one request per connection; anything but GET /metrics gets 404.
/// </summary>
public sealed class MetricsServer : IAsyncDisposable
{
    public const int DefaultPort = 9962;

    private readonly TcpListener _listener;
    private readonly Func<string> _render;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    private MetricsServer(TcpListener listener, Func<string> render)
    {
        _listener = listener;
        _render = render;
        _loop = Task.Run(LoopAsync);
    }

    public IPEndPoint LocalEndpoint => (IPEndPoint)_listener.LocalEndpoint;

    /// <param name="render">Produces the metrics text; called once per scrape.</param>
    public static MetricsServer Start(IPEndPoint endpoint, Func<string> render)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(render);
        var listener = new TcpListener(endpoint);
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            throw new IOException($"cannot listen for metrics on {endpoint}: {e.Message}", e);
        }
        return new MetricsServer(listener, render);
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
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                timeout.CancelAfter(TimeSpan.FromSeconds(10));
                var stream = client.GetStream();
                var reader = new StreamReader(stream, Encoding.ASCII, false, 1024, leaveOpen: true);
                string? requestLine = await reader.ReadLineAsync(timeout.Token).ConfigureAwait(false);
                string? header;
                int headers = 0;
                while ((header = await reader.ReadLineAsync(timeout.Token).ConfigureAwait(false)) is { Length: > 0 } && ++headers < 100)
                {
                }
                string[] parts = requestLine?.Split(' ') ?? [];
                bool ok = parts.Length >= 2 && parts[0] == "GET" && (parts[1] == "/metrics" || parts[1].StartsWith("/metrics?", StringComparison.Ordinal));
                string body = ok ? _render() : "not found; metrics are at /metrics\n";
                byte[] bodyBytes = Encoding.UTF8.GetBytes(body);
                string head = ok
                    ? "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    : "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n";
                head += $"Content-Length: {bodyBytes.Length}\r\nConnection: close\r\n\r\n";
                await stream.WriteAsync(Encoding.ASCII.GetBytes(head), timeout.Token).ConfigureAwait(false);
                await stream.WriteAsync(bodyBytes, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
            }
        }
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
