using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text.Json;
using Gateway.Policy;

namespace Gateway.Node.Flows;

/// <summary>Settings of a <see cref="FlowLog"/>. At least one of the file and the socket is required.</summary>
public sealed class FlowLogOptions
{
    /// <summary>Written into every line as <c>node_name</c>.</summary>
    public string NodeName { get; init; } = Environment.MachineName;

    /// <summary>JSON-lines file to append to (created 0640 with its folder); null for none.</summary>
    public string? FilePath { get; init; }

    /// <summary>Unix stream socket to serve the live stream on (created 0600); null for none.</summary>
    public string? SocketPath { get; init; }

    /// <summary>A socket client with more than this many bytes it has not read yet is disconnected.</summary>
    public int MaxClientBacklogBytes { get; init; } = 1 << 20;

    /// <summary>At most this many socket clients at once; more are closed on accept.</summary>
    public int MaxClients { get; init; } = 16;

    /// <summary>How long the writer sleeps when nobody calls <see cref="FlowLog.Notify"/>.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Events serialized per write (one file write and one send per client per batch).</summary>
    public int MaxBatch { get; init; } = 512;

    /// <summary>
    /// When the file grows past this many bytes it is renamed to <c>PATH.1</c> (replacing an older
    /// one) and a new file is started, so a long-running node keeps at most about twice this on disk.
    /// 0 disables rotation.
    /// </summary>
    public long MaxFileBytes { get; init; } = 64L << 20;

    /// <summary>Receives one line per problem (file write failures, dropped clients); may be null.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// Drains a <see cref="FlowEventRing"/> on its own thread and writes each event as one JSON line
/// (<see cref="FlowLogJson"/>) to a file and to every client of a local Unix stream socket.
/// </summary>
/// <remarks>
/// The datapath only ever calls <see cref="FlowEventRing.TryWrite"/> (and, at the end of a batch,
/// optionally <see cref="Notify"/>); neither waits. The writer wakes on <see cref="Notify"/> or
/// after <see cref="FlowLogOptions.PollInterval"/>, serializes up to
/// <see cref="FlowLogOptions.MaxBatch"/> events into one buffer, appends it to the file, flushes,
/// then hands it to each socket client with a non-blocking send. What a client's socket buffer
/// cannot take is kept for it, up to <see cref="FlowLogOptions.MaxClientBacklogBytes"/>; past
/// that the client is disconnected and counted in <see cref="DroppedClients"/>, so a reader that
/// stalls can never hold up the file or the other clients.
///
/// Socket stream: the first line a client receives is
/// <c>{"flow_log":{"node_name":..,"file":..,"file_offset":N}}</c>: every flow after it is
/// sent on the socket and every flow before it is in the file below byte N, so a reader can
/// print history from the file and follow the socket without gaps or repeats.
/// </remarks>
public sealed class FlowLog : IDisposable
{
    private const int MaxRecentSnapshots = 4;

    private readonly FlowEventRing _ring;
    private readonly Func<PolicySnapshot?> _snapshot;
    private readonly FlowLogOptions _options;
    private FileStream? _file;
    private readonly Socket? _listener;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private readonly Task _acceptLoop = Task.CompletedTask;
    private readonly ConcurrentQueue<Socket> _accepted = new();

    // Writer-thread state.
    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);
    private readonly Utf8JsonWriter _json;
    private readonly List<Client> _clients = [];
    private readonly SortedList<long, PolicySnapshot> _recent = [];
    private readonly byte[] _discard = new byte[4096];
    private bool _fileFailing;

    private int _signalled;
    private volatile bool _stopping;
    private int _disposed;
    private long _lines;
    private long _batches;
    private int _clientCount;
    private long _droppedClients;
    private long _writeErrors;
    private long _rotations;

    public FlowLog(FlowEventRing ring, Func<PolicySnapshot?> snapshot, FlowLogOptions options)
    {
        ArgumentNullException.ThrowIfNull(ring);
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.NodeName);
        if (options.FilePath is null && options.SocketPath is null)
        {
            throw new ArgumentException("A flow log needs a file, a socket or both.", nameof(options));
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxClientBacklogBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxClients, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxFileBytes);
        if (options.PollInterval <= TimeSpan.Zero || options.PollInterval > TimeSpan.FromSeconds(10))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.PollInterval, "PollInterval must be in (0, 10 s].");
        }
        _ring = ring;
        _snapshot = snapshot;
        _options = options;
        _json = new Utf8JsonWriter(_buffer);
        try
        {
            if (options.FilePath is not null)
            {
                _file = OpenFile(options.FilePath);
            }
            if (options.SocketPath is not null)
            {
                _listener = Listen(options.SocketPath);
                _acceptLoop = Task.Run(AcceptLoopAsync);
            }
        }
        catch
        {
            _stop.Cancel();
            _listener?.Dispose();
            _file?.Dispose();
            throw;
        }
        _thread = new Thread(Run) { IsBackground = true, Name = "flow-log" };
        _thread.Start();
    }

    /// <summary>A flow log at the default paths for an interface (<see cref="FlowLogPaths"/>).</summary>
    public static FlowLog ForInterface(
        FlowEventRing ring, Func<PolicySnapshot?> snapshot, string interfaceName, string? nodeName = null,
        string directory = FlowLogPaths.DefaultDirectory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        return new FlowLog(ring, snapshot, new FlowLogOptions
        {
            NodeName = nodeName ?? Environment.MachineName,
            FilePath = FlowLogPaths.FileFor(interfaceName, directory),
            SocketPath = FlowLogPaths.SocketFor(interfaceName, directory),
        });
    }

    public string? FilePath => _options.FilePath;
    public string? SocketPath => _options.SocketPath;
    public string NodeName => _options.NodeName;

    /// <summary>Flow lines serialized and written (to the file and the socket clients of the moment).</summary>
    public long LinesWritten => Interlocked.Read(ref _lines);

    /// <summary>Batches written (one file write each).</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Socket clients currently being served.</summary>
    public int SocketClients => Volatile.Read(ref _clientCount);

    /// <summary>Socket clients disconnected because they fell too far behind (or were over <see cref="FlowLogOptions.MaxClients"/>).</summary>
    public long DroppedClients => Interlocked.Read(ref _droppedClients);

    /// <summary>Times the file was rotated (see <see cref="FlowLogOptions.MaxFileBytes"/>).</summary>
    public long Rotations => Interlocked.Read(ref _rotations);

    /// <summary>Failed writes to the file (the lines still went to the socket).</summary>
    public long WriteErrors => Interlocked.Read(ref _writeErrors);

    /// <summary>Events the datapath could not queue because the ring was full.</summary>
    public long Lost => _ring.Lost;

    /// <summary>
    /// Wakes the writer now instead of at the next poll. Cheap and non-blocking (one read of a flag
    /// when the writer is already signalled); the datapath may call it at the end of each batch.
    /// </summary>
    public void Notify()
    {
        // After Dispose this is a no-op (the event is never disposed, so a late call is harmless).
        if (Volatile.Read(ref _signalled) == 0 && Interlocked.Exchange(ref _signalled, 1) == 0 && !_stopping)
        {
            _wake.Set();
        }
    }

    /// <summary>Writes what is left in the ring, closes the clients, the file and the socket.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopping = true;
        _wake.Set();
        _stop.Cancel();
        _listener?.Dispose();
        try
        {
            _acceptLoop.Wait();
        }
        catch (AggregateException)
        {
            // The accept loop ends by cancellation; nothing to report.
        }
        _thread.Join();
        if (_options.SocketPath is not null)
        {
            try
            {
                File.Delete(_options.SocketPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        // _wake is deliberately not disposed: the datapath may still call Notify while shutting
        // down, and a ManualResetEventSlim that never handed out a WaitHandle holds no OS resource.
        _stop.Dispose();
    }

    private static FileStream OpenFile(string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir))
        {
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
        const UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead;
        var file = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.Append,
            Access = FileAccess.Write,
            // Readers (gateway observe, tail) read while we append; rotation may rename it.
            Share = FileShare.ReadWrite | FileShare.Delete,
            UnixCreateMode = mode,
            BufferSize = 0,
        });
        try
        {
            // A file left by an earlier run keeps its mode; flows name pods and addresses, so never
            // leave them readable by others.
            var existing = File.GetUnixFileMode(path);
            if ((existing & ~mode) != 0)
            {
                File.SetUnixFileMode(path, existing & mode);
            }
        }
        catch
        {
            file.Dispose();
            throw;
        }
        return file;
    }

    private static Socket Listen(string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir))
        {
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
        return OwnerOnlySocket.Listen(path, "this flow log");
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener!.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || _stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            // The writer thread owns the client list; it adopts the socket at its next wake-up.
            _accepted.Enqueue(client);
            Notify();
        }
    }

    private void Run()
    {
        while (true)
        {
            bool stopping = _stopping;
            if (!stopping)
            {
                _wake.Wait(_options.PollInterval);
            }
            // Clear the signal before draining: an event queued before a Notify that saw the flag
            // still set is drained by this pass.
            Volatile.Write(ref _signalled, 0);
            _wake.Reset();
            try
            {
                AdoptClients();
                while (WriteBatch() == _options.MaxBatch)
                {
                }
                ServiceClients();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Never let one bad event or client end the flow log.
                Interlocked.Increment(ref _writeErrors);
                _options.Log?.Invoke($"flow log: {e.GetType().Name}: {e.Message}");
            }
            if (stopping)
            {
                break;
            }
        }
        Shutdown();
    }

    private void Shutdown()
    {
        while (_accepted.TryDequeue(out var late))
        {
            late.Dispose();
        }
        foreach (var c in _clients)
        {
            TryFlushPending(c);
            try
            {
                c.Socket.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
            }
            c.Socket.Dispose();
        }
        _clients.Clear();
        Volatile.Write(ref _clientCount, 0);
        _json.Dispose();
        _file?.Dispose();
    }

    private void AdoptClients()
    {
        while (_accepted.TryDequeue(out var socket))
        {
            if (_clients.Count >= _options.MaxClients)
            {
                socket.Dispose();
                Interlocked.Increment(ref _droppedClients);
                _options.Log?.Invoke($"flow log: refused a socket client (already {_clients.Count})");
                continue;
            }
            socket.Blocking = false;
            var client = new Client(socket);
            _clients.Add(client);
            Volatile.Write(ref _clientCount, _clients.Count);
            Send(client, Hello());
        }
    }

    private byte[] Hello()
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("flow_log");
            w.WriteString("node_name", _options.NodeName);
            if (_file is not null)
            {
                w.WriteString("file", Path.GetFullPath(_options.FilePath!));
                w.WriteNumber("file_offset", _file.Position);
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        buffer.GetSpan(1)[0] = (byte)'\n';
        buffer.Advance(1);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Serializes up to MaxBatch events and writes them out; returns how many.</summary>
    private int WriteBatch()
    {
        _buffer.ResetWrittenCount();
        PolicySnapshot? current = null;
        int n = 0;
        while (n < _options.MaxBatch && _ring.TryRead(out var e))
        {
            if (n == 0)
            {
                current = CurrentSnapshot();
            }
            _json.Reset(_buffer);
            FlowLogJson.Write(_json, e, current, _recent.GetValueOrDefault(e.PolicyVersion), _options.NodeName);
            _json.Flush();
            _buffer.GetSpan(1)[0] = (byte)'\n';
            _buffer.Advance(1);
            n++;
        }
        if (n == 0)
        {
            return 0;
        }
        var bytes = _buffer.WrittenSpan;
        if (_options.FilePath is not null)
        {
            try
            {
                // Null after a failed rotation: try to open it again at every batch.
                _file ??= OpenFile(_options.FilePath);
                _file.Write(bytes);
                _file.Flush();
                if (_options.MaxFileBytes > 0 && _file.Position >= _options.MaxFileBytes)
                {
                    Rotate();
                }
                if (_fileFailing)
                {
                    _fileFailing = false;
                    _options.Log?.Invoke($"flow log: writing {_options.FilePath} works again");
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Interlocked.Increment(ref _writeErrors);
                if (!_fileFailing)
                {
                    // Once per failure streak, not once per batch (a full disk would flood the log).
                    _fileFailing = true;
                    _options.Log?.Invoke($"flow log: cannot write {_options.FilePath}: {e.Message}");
                }
            }
        }
        for (int i = _clients.Count - 1; i >= 0; i--)
        {
            Send(_clients[i], bytes);
        }
        Interlocked.Add(ref _lines, n);
        Interlocked.Increment(ref _batches);
        return n;
    }

    /// <summary>
    /// PATH -> PATH.1, then a fresh PATH. Readers tailing by name see the file shrink and start
    /// over; a socket client's hello offset referred to the old file, but it reads live flows
    /// from the socket from then on, so nothing is lost for it.
    /// </summary>
    private void Rotate()
    {
        string path = _options.FilePath!;
        _file!.Dispose();
        _file = null;
        File.Move(path, path + ".1", overwrite: true);
        _file = OpenFile(path);
        Interlocked.Increment(ref _rotations);
    }

    private PolicySnapshot? CurrentSnapshot()
    {
        PolicySnapshot? s;
        try
        {
            s = _snapshot();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _options.Log?.Invoke($"flow log: snapshot unavailable: {e.Message}");
            return null;
        }
        // Keep the last few versions so events decided just before a policy reload still name
        // their rule (rule ids index one compiled snapshot).
        if (s is not null && !_recent.ContainsKey(s.Version))
        {
            _recent[s.Version] = s;
            if (_recent.Count > MaxRecentSnapshots)
            {
                _recent.RemoveAt(0);
            }
        }
        return s;
    }

    /// <summary>Sends or queues <paramref name="data"/> for one client; removes it when dead or too slow.</summary>
    private void Send(Client c, ReadOnlySpan<byte> data)
    {
        if (!TryFlushPending(c))
        {
            Remove(c, slow: false);
            return;
        }
        if (c.PendingCount == 0)
        {
            while (data.Length > 0)
            {
                int sent = c.Socket.Send(data, SocketFlags.None, out var error);
                if (error == SocketError.WouldBlock || (error == SocketError.Success && sent == 0))
                {
                    break;
                }
                if (error != SocketError.Success)
                {
                    Remove(c, slow: false);
                    return;
                }
                data = data[sent..];
            }
        }
        if (data.Length == 0)
        {
            return;
        }
        if (c.PendingCount + data.Length > _options.MaxClientBacklogBytes)
        {
            Remove(c, slow: true);
            return;
        }
        c.Append(data);
    }

    /// <summary>Pushes a client's backlog; false when the peer is gone.</summary>
    private static bool TryFlushPending(Client c)
    {
        while (c.PendingCount > 0)
        {
            int sent = c.Socket.Send(c.PendingSpan, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock || (error == SocketError.Success && sent == 0))
            {
                return true;
            }
            if (error != SocketError.Success)
            {
                return false;
            }
            c.Consume(sent);
        }
        return true;
    }

    /// <summary>Between batches: push backlogs and notice clients that hung up.</summary>
    private void ServiceClients()
    {
        for (int i = _clients.Count - 1; i >= 0; i--)
        {
            var c = _clients[i];
            if (!TryFlushPending(c) || HungUp(c))
            {
                Remove(c, slow: false);
            }
        }
    }

    private bool HungUp(Client c)
    {
        try
        {
            // Readable with nothing to read is end of stream. Anything a client sends is ignored.
            while (c.Socket.Poll(0, SelectMode.SelectRead))
            {
                int n = c.Socket.Receive(_discard, SocketFlags.None, out var error);
                if (error == SocketError.WouldBlock)
                {
                    return false;
                }
                if (error != SocketError.Success || n == 0)
                {
                    return true;
                }
            }
            return false;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    private void Remove(Client c, bool slow)
    {
        _clients.Remove(c);
        Volatile.Write(ref _clientCount, _clients.Count);
        if (slow)
        {
            Interlocked.Increment(ref _droppedClients);
            _options.Log?.Invoke($"flow log: disconnected a socket client more than {_options.MaxClientBacklogBytes} bytes behind");
        }
        c.Socket.Dispose();
    }

    /// <summary>A socket client and the bytes it has not taken yet.</summary>
    private sealed class Client(Socket socket)
    {
        private byte[] _pending = [];
        private int _start;

        public Socket Socket { get; } = socket;
        public int PendingCount { get; private set; }
        public ReadOnlySpan<byte> PendingSpan => _pending.AsSpan(_start, PendingCount);

        public void Append(ReadOnlySpan<byte> data)
        {
            if (_start + PendingCount + data.Length > _pending.Length)
            {
                int needed = PendingCount + data.Length;
                var target = needed <= _pending.Length ? _pending : new byte[Math.Max(needed, _pending.Length * 2)];
                _pending.AsSpan(_start, PendingCount).CopyTo(target);
                _pending = target;
                _start = 0;
            }
            data.CopyTo(_pending.AsSpan(_start + PendingCount));
            PendingCount += data.Length;
        }

        public void Consume(int count)
        {
            _start += count;
            PendingCount -= count;
            if (PendingCount == 0)
            {
                _start = 0;
            }
        }
    }
}
