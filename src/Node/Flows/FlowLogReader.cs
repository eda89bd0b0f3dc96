using System.Buffers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Gateway.Node.Flows;

/// <summary>What a flow log socket says first: the node and how far the file went when the client joined.</summary>
public sealed record FlowLogHello(string? NodeName, string? File, long FileOffset)
{
    /// <summary>Recognizes <c>{"flow_log":{"node_name":..,"file":..,"file_offset":N}}</c>; never throws.</summary>
    public static bool TryParse(string line, out FlowLogHello hello)
    {
        hello = null!;
        try
        {
            using var doc = JsonDocument.Parse(line);
            if (doc.RootElement.ValueKind != JsonValueKind.Object ||
                !doc.RootElement.TryGetProperty("flow_log", out var h) || h.ValueKind != JsonValueKind.Object)
            {
                return false;
            }
            string? node = h.TryGetProperty("node_name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
            string? file = h.TryGetProperty("file", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : null;
            long offset = h.TryGetProperty("file_offset", out var o) && o.ValueKind == JsonValueKind.Number && o.TryGetInt64(out long v) && v >= 0 ? v : -1;
            hello = new FlowLogHello(node, file, offset);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}

/// <summary>
/// Reads flow log lines back: from the file (a range of it, or tailing it as it grows) and from
/// the live socket. Only complete lines (ended by '\n') are handed out; a line the writer has
/// not finished yet is picked up once it is.
/// </summary>
public static class FlowLogReader
{
    /// <summary>
    /// Calls <paramref name="onLine"/> for each complete line between <paramref name="start"/> and
    /// <paramref name="end"/> (-1: the current end of file); returns the offset after the last one.
    /// </summary>
    public static long ReadLines(string path, long start, long end, Action<string> onLine)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(onLine);
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        using var file = OpenShared(path);
        if (end < 0 || end > file.Length)
        {
            end = file.Length;
        }
        file.Position = Math.Min(start, end);
        var lines = new LineSplitter();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            long position = file.Position;
            while (position < end)
            {
                int n = file.Read(buffer, 0, (int)Math.Min(buffer.Length, end - position));
                if (n == 0)
                {
                    break;
                }
                position += n;
                lines.Feed(buffer.AsSpan(0, n), onLine);
            }
            return position - lines.Pending;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Follows a file from <paramref name="position"/> as it grows, checking every
    /// <paramref name="poll"/>; starts again from 0 if it shrinks (truncated or replaced).
    /// Ends when <paramref name="onLine"/> returns false or the token is cancelled.
    /// </summary>
    public static async Task TailAsync(string path, long position, Func<string, bool> onLine, TimeSpan poll, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(onLine);
        var lines = new LineSplitter();
        byte[] buffer = new byte[64 * 1024];
        bool go = true;
        while (go && !cancel.IsCancellationRequested)
        {
            try
            {
                await using var file = OpenShared(path);
                if (file.Length < position)
                {
                    position = 0;
                    lines.Reset();
                }
                file.Position = position;
                int n;
                while (go && (n = await file.ReadAsync(buffer, cancel).ConfigureAwait(false)) > 0)
                {
                    position += n;
                    lines.Feed(buffer.AsSpan(0, n), line => go = go && onLine(line));
                }
            }
            catch (FileNotFoundException)
            {
                // Rotated away and not recreated yet: wait for the next one.
                position = 0;
                lines.Reset();
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                return;
            }
            if (go)
            {
                try
                {
                    await Task.Delay(poll, cancel).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Connects to a flow log socket; null when nothing serves it.</summary>
    public static Socket? TryConnect(string socketPath)
    {
        ArgumentNullException.ThrowIfNull(socketPath);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            return socket;
        }
        catch (SocketException)
        {
            socket.Dispose();
            return null;
        }
    }

    /// <summary>
    /// Reads lines from a connected flow log socket until <paramref name="onLine"/> returns false,
    /// the server closes the stream (returns true) or the token is cancelled (returns false).
    /// </summary>
    public static async Task<bool> ReadSocketAsync(Socket socket, Func<string, bool> onLine, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(onLine);
        var lines = new LineSplitter();
        byte[] buffer = new byte[64 * 1024];
        bool go = true;
        while (go)
        {
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, SocketFlags.None, cancel).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
            catch (SocketException)
            {
                return true;
            }
            if (n == 0)
            {
                return true;
            }
            lines.Feed(buffer.AsSpan(0, n), line => go = go && onLine(line));
        }
        return false;
    }

    private static FileStream OpenShared(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);

    /// <summary>Cuts a byte stream into UTF-8 lines, keeping a trailing partial line for the next feed.</summary>
    private sealed class LineSplitter
    {
        private readonly ArrayBufferWriter<byte> _partial = new();

        public int Pending => _partial.WrittenCount;

        public void Reset() => _partial.ResetWrittenCount();

        public void Feed(ReadOnlySpan<byte> data, Action<string> onLine)
        {
            while (data.Length > 0)
            {
                int nl = data.IndexOf((byte)'\n');
                if (nl < 0)
                {
                    _partial.Write(data);
                    return;
                }
                string line;
                if (_partial.WrittenCount > 0)
                {
                    _partial.Write(data[..nl]);
                    line = Encoding.UTF8.GetString(_partial.WrittenSpan);
                    _partial.ResetWrittenCount();
                }
                else
                {
                    line = Encoding.UTF8.GetString(data[..nl]);
                }
                onLine(line.TrimEnd('\r'));
                data = data[(nl + 1)..];
            }
        }
    }
}
