using System.Net.Sockets;
using System.Text;

namespace Gateway.Node.Uapi;

/// <summary>
/// Serves WireGuard's cross-platform userspace API on a Unix stream socket
/// (<c>/var/run/wireguard/IFNAME.sock</c>, mode 0600), so the stock <c>wg</c> tool can show and
/// change the running node. The socket only frames requests; what they mean is up to the handler.
/// </summary>
/// <remarks>
/// A request is "get=1" or "set=1" followed by key=value lines and ended by an empty line.
/// The handler returns the complete response, which must end with "errno=N\n\n"; a client may
/// send several requests on one connection. Unknown operations close the connection, as
/// wireguard-go does.
/// </remarks>
public sealed class UapiSocketServer : IAsyncDisposable
{
    public const string DefaultDirectory = "/var/run/wireguard";

    /// <summary>Requests larger than this are refused (the socket is root-only, but a bug in a
    /// client must not make the daemon buffer without bound).</summary>
    public const int MaxRequestBytes = 4 << 20;

    private readonly Func<string, string> _handler;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;

    private UapiSocketServer(string path, Socket listener, Func<string, string> handler)
    {
        SocketPath = path;
        _listener = listener;
        _handler = handler;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public string SocketPath { get; }

    /// <summary>Creates the socket for <paramref name="interfaceName"/> and starts serving.</summary>
    /// <param name="handler">Gets the request block (first line included, final empty line not)
    /// and returns the full response text.</param>
    public static UapiSocketServer Start(string interfaceName, Func<string, string> handler, string directory = DefaultDirectory)
    {
        ArgumentException.ThrowIfNullOrEmpty(interfaceName);
        ArgumentNullException.ThrowIfNull(handler);
        if (interfaceName.Contains('/') || interfaceName.Length > 15)
        {
            throw new ArgumentException($"'{interfaceName}' is not a valid interface name.", nameof(interfaceName));
        }
        Directory.CreateDirectory(directory);
        File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
            UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        string path = Path.Combine(directory, interfaceName + ".sock");
        var listener = OwnerOnlySocket.Listen(path, $"interface '{interfaceName}'");
        return new UapiSocketServer(path, listener, handler);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
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

    private async Task ServeAsync(Socket client)
    {
        using (client)
        await using (var stream = new NetworkStream(client, ownsSocket: false))
        {
            var reader = new StreamReader(stream, new UTF8Encoding(false), false, 4096, leaveOpen: true);
            var request = new StringBuilder();
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    request.Clear();
                    string? line;
                    while ((line = await reader.ReadLineAsync(_stop.Token).ConfigureAwait(false)) is not null && line.Length > 0)
                    {
                        request.Append(line).Append('\n');
                        if (request.Length > MaxRequestBytes)
                        {
                            return;
                        }
                    }
                    if (request.Length == 0)
                    {
                        return; // end of stream (or an empty request): nothing to answer
                    }
                    string text = request.ToString();
                    if (!text.StartsWith("get=1\n", StringComparison.Ordinal) && !text.StartsWith("set=1\n", StringComparison.Ordinal))
                    {
                        return;
                    }
                    string response = _handler(text);
                    byte[] bytes = Encoding.UTF8.GetBytes(response);
                    await stream.WriteAsync(bytes, _stop.Token).ConfigureAwait(false);
                    if (line is null)
                    {
                        return;
                    }
                }
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
                // The client went away or we are stopping; nothing to report.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        try
        {
            File.Delete(SocketPath);
        }
        catch (IOException)
        {
        }
        _stop.Dispose();
    }
}
