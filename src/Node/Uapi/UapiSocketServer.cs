using System.Net.Sockets;
using System.Text;
using Gateway.Tunnel.Uapi;

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
    public const int MaxRequestBytes = UapiProtocol.MaxRequestLength;

    /// <summary>Lines longer than this are refused before they are buffered further.</summary>
    public const int MaxLineBytes = UapiProtocol.MaxLineLength;

    private const string InvalidReply = "errno=-22\n\n";

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
            var reader = new BoundedLineReader(stream, MaxLineBytes);
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
                            await ReplyAsync(stream, InvalidReply).ConfigureAwait(false);
                            return;
                        }
                    }
                    if (reader.LineTooLong)
                    {
                        // Refused without reading the rest: the connection cannot be re-synchronised.
                        await ReplyAsync(stream, InvalidReply).ConfigureAwait(false);
                        return;
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
                    string response;
                    try
                    {
                        response = _handler(text);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        // A handler bug must not take the daemon's control socket down with it.
                        response = "errno=-5\n\n";
                    }
                    await ReplyAsync(stream, response).ConfigureAwait(false);
                    if (line is null)
                    {
                        return;
                    }
                }
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or DecoderFallbackException)
            {
                // The client went away or we are stopping; nothing to report.
            }
        }
    }

    private Task ReplyAsync(NetworkStream stream, string response) =>
        stream.WriteAsync(Encoding.UTF8.GetBytes(response), _stop.Token).AsTask();

    /// <summary>
    /// Reads '\n'-terminated UTF-8 lines from a stream without ever holding more than one line of
    /// at most <c>maxLine</c> bytes: a longer line stops the reader (<see cref="LineTooLong"/>)
    /// instead of growing a buffer. The last line may end at the end of the stream.
    /// </summary>
    internal sealed class BoundedLineReader(Stream stream, int maxLine)
    {
        private readonly byte[] _buffer = new byte[4096];
        private readonly byte[] _line = new byte[maxLine];
        private int _start;
        private int _end;

        public bool LineTooLong { get; private set; }

        /// <summary>The next line without its '\n' (and '\r'), or null at the end of the stream
        /// or after a line that was too long.</summary>
        public async ValueTask<string?> ReadLineAsync(CancellationToken token)
        {
            if (LineTooLong)
            {
                return null;
            }
            int length = 0;
            while (true)
            {
                if (_start == _end)
                {
                    _start = 0;
                    _end = await stream.ReadAsync(_buffer, token).ConfigureAwait(false);
                    if (_end == 0)
                    {
                        return length == 0 ? null : Decode(length);
                    }
                }
                int newline = _buffer.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
                int take = newline < 0 ? _end - _start : newline;
                if (length + take > _line.Length)
                {
                    LineTooLong = true;
                    return null;
                }
                _buffer.AsSpan(_start, take).CopyTo(_line.AsSpan(length));
                length += take;
                _start += take;
                if (newline >= 0)
                {
                    _start++; // the '\n'
                    return Decode(length);
                }
            }
        }

        private string Decode(int length)
        {
            if (length > 0 && _line[length - 1] == (byte)'\r')
            {
                length--;
            }
            return Encoding.UTF8.GetString(_line, 0, length);
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
