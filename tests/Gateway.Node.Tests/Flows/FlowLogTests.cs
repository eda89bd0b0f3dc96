using System.Net.Sockets;
using System.Text.Json;
using Gateway.Datapath;
using Gateway.Node.Flows;
using Gateway.Policy;

namespace Gateway.Node.Tests.Flows;

public sealed class FlowLogTests : IDisposable
{
    private readonly FlowTestWorld _world = new();

    public void Dispose() => _world.Dispose();

    private FlowLog Start(string? file, string? socket, int backlog = 1 << 20, Action<string>? log = null) =>
        new(_world.Ring, () => _world.Engine.Current, new FlowLogOptions
        {
            NodeName = "node-a",
            FilePath = file,
            SocketPath = socket,
            MaxClientBacklogBytes = backlog,
            Log = log,
        });

    [Fact]
    public void WritesExactlyTheEnqueuedEventsToTheFileAndEverySocketClient()
    {
        string file = _world.NewPath("gw0.flows.jsonl");
        string sock = _world.NewPath("gw0.flows.sock");
        using var log = Start(file, sock);
        using var c1 = FlowTestWorld.Connect(sock);
        using var c2 = FlowTestWorld.Connect(sock);
        FlowTestWorld.WaitUntil(() => log.SocketClients == 2, "both clients are adopted");

        Assert.True(_world.Allowed().Allowed);
        Assert.False(_world.Denied().Allowed);
        // One event as the overlay receive path writes it: identity from the VNI, sealed by WireGuard.
        _world.Ring.TryWrite(new FlowEvent
        {
            TimeUnixNs = 1_795_000_000_123_456_789,
            Verdict = FlowVerdict.Forwarded,
            TrafficDirection = Direction.Ingress,
            IsReply = true,
            Encrypted = true,
            Key = FlowTestWorld.Tcp("10.2.0.20", 80, "10.1.0.10", 34567) with { TcpFlags = TcpFlag.Syn | TcpFlag.Ack },
            SourceIdentity = _world.Id("backend-1"),
            DestinationIdentity = _world.Id("frontend-1"),
            RuleId = -1,
        });
        log.Notify();
        FlowTestWorld.WaitUntil(() => log.LinesWritten == 3, "three lines are written");

        var fromFile = File.ReadAllLines(file);
        var fromC1 = FlowTestWorld.ReadLines(c1, 4);
        var fromC2 = FlowTestWorld.ReadLines(c2, 4);
        Assert.Equal(3, fromFile.Length);
        Assert.True(FlowLogHello.TryParse(fromC1[0], out var hello));
        Assert.Equal("node-a", hello.NodeName);
        Assert.Equal(file, hello.File);
        Assert.Equal(0, hello.FileOffset); // joined before any flow: all of them come on the socket
        Assert.Equal(fromFile, fromC1.Skip(1));
        Assert.Equal(fromFile, fromC2.Skip(1));

        var allowed = JsonDocument.Parse(fromFile[0]).RootElement;
        Assert.Equal("2026-11-28T13:00:00.124500000Z", allowed.GetProperty("time").GetString());
        Assert.Equal("FORWARDED", allowed.GetProperty("verdict").GetString());
        Assert.False(allowed.TryGetProperty("drop_reason_desc", out _));
        Assert.Equal("10.1.0.10", allowed.GetProperty("IP").GetProperty("source").GetString());
        Assert.Equal("10.2.0.20", allowed.GetProperty("IP").GetProperty("destination").GetString());
        Assert.Equal("IPv4", allowed.GetProperty("IP").GetProperty("ipVersion").GetString());
        Assert.False(allowed.GetProperty("IP").GetProperty("encrypted").GetBoolean());
        var tcp = allowed.GetProperty("l4").GetProperty("TCP");
        Assert.Equal(34567, tcp.GetProperty("source_port").GetInt32());
        Assert.Equal(80, tcp.GetProperty("destination_port").GetInt32());
        Assert.True(tcp.GetProperty("flags").GetProperty("SYN").GetBoolean());
        var src = allowed.GetProperty("source");
        Assert.Equal(_world.Id("frontend-1"), src.GetProperty("identity").GetUInt32());
        Assert.Contains("k8s:app=frontend", src.GetProperty("labels").EnumerateArray().Select(l => l.GetString()));
        Assert.Equal("default", src.GetProperty("namespace").GetString());
        Assert.Equal("frontend-1", src.GetProperty("pod_name").GetString());
        Assert.Equal("backend-1", allowed.GetProperty("destination").GetProperty("pod_name").GetString());
        Assert.Equal("INGRESS", allowed.GetProperty("traffic_direction").GetString());
        Assert.False(allowed.GetProperty("is_reply").GetBoolean());
        Assert.Equal("node-a", allowed.GetProperty("node_name").GetString());
        var rule = allowed.GetProperty("ingress_allowed_by")[0];
        Assert.Equal("backend-allow-frontend", rule.GetProperty("name").GetString());
        Assert.Equal("default", rule.GetProperty("namespace").GetString());
        Assert.Equal("spec.ingress[0]", rule.GetProperty("rule").GetString());

        var denied = JsonDocument.Parse(fromFile[1]).RootElement;
        Assert.Equal("DROPPED", denied.GetProperty("verdict").GetString());
        Assert.Equal(133, denied.GetProperty("drop_reason").GetInt32());
        Assert.Equal("POLICY_DENIED", denied.GetProperty("drop_reason_desc").GetString());
        Assert.Equal("db-1", denied.GetProperty("destination").GetProperty("pod_name").GetString());
        Assert.Equal("INGRESS", denied.GetProperty("traffic_direction").GetString());

        var reply = JsonDocument.Parse(fromFile[2]).RootElement;
        Assert.Equal("2026-11-18T11:06:40.123456789Z", reply.GetProperty("time").GetString());
        Assert.True(reply.GetProperty("IP").GetProperty("encrypted").GetBoolean());
        Assert.True(reply.GetProperty("is_reply").GetBoolean());
        Assert.True(reply.GetProperty("l4").GetProperty("TCP").GetProperty("flags").GetProperty("ACK").GetBoolean());
        Assert.False(reply.TryGetProperty("ingress_allowed_by", out _)); // no rule decided a reply

        Assert.Equal(0, log.Lost);
        Assert.Equal(0, log.DroppedClients);
        Assert.Equal(0, log.WriteErrors);
    }

    [Fact]
    public async Task AClientThatNeverReadsIsDroppedWithoutHoldingUpTheFileOrOtherClients()
    {
        string file = _world.NewPath("gw0.flows.jsonl");
        string sock = _world.NewPath("gw0.flows.sock");
        var messages = new List<string>();
        using var log = Start(file, sock, backlog: 32 * 1024, log: m => { lock (messages) { messages.Add(m); } });
        using var stuck = FlowTestWorld.Connect(sock);
        stuck.ReceiveBufferSize = 4096;
        using var reader = FlowTestWorld.Connect(sock);
        FlowTestWorld.WaitUntil(() => log.SocketClients == 2, "both clients are adopted");

        const int total = 3000;
        var receivedLines = new List<string>();
        int receivedCount = 0;
        var received = Task.Run(() =>
        {
            reader.ReceiveTimeout = 20_000;
            var buffer = new byte[65536];
            var partial = new List<byte>();
            while (Volatile.Read(ref receivedCount) < total + 1)
            {
                int n = reader.Receive(buffer);
                if (n == 0)
                {
                    break;
                }
                for (int i = 0; i < n; i++)
                {
                    if (buffer[i] == (byte)'\n')
                    {
                        receivedLines.Add(System.Text.Encoding.UTF8.GetString(partial.ToArray()));
                        partial.Clear();
                        Interlocked.Increment(ref receivedCount);
                    }
                    else
                    {
                        partial.Add(buffer[i]);
                    }
                }
            }
            return receivedLines;
        });
        for (int round = 0; round < total / 100; round++)
        {
            // A reader that keeps up: the next 100 events only once it has the previous ones.
            for (int i = 0; i < 100; i++)
            {
                _world.Allowed((ushort)(1000 + round * 100 + i));
            }
            log.Notify();
            int expected = 1 + (round + 1) * 100;
            FlowTestWorld.WaitUntil(() => Volatile.Read(ref receivedCount) >= expected, $"the reader has {expected} lines");
        }
        FlowTestWorld.WaitUntil(() => log.LinesWritten == total, "every line is written");
        FlowTestWorld.WaitUntil(() => log.DroppedClients == 1, $"the stuck client is dropped (clients {log.SocketClients}, errors {log.WriteErrors}, {string.Join("|", messages)})");
        var got1 = await received.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(total + 1, got1.Count);
        Assert.Equal(total, File.ReadAllLines(file).Length);
        Assert.Equal(File.ReadAllLines(file), got1.Skip(1));
        Assert.Equal(1, log.SocketClients);
        Assert.Equal(0, log.Lost);
        lock (messages)
        {
            Assert.Contains(messages, m => m.Contains("disconnected a socket client", StringComparison.Ordinal));
        }

        // The dropped client sees the end of the stream after what it had been sent.
        stuck.ReceiveTimeout = 20_000;
        var buffer = new byte[65536];
        long got = 0;
        int n;
        while ((n = stuck.Receive(buffer)) > 0)
        {
            got += n;
        }
        Assert.True(got < new FileInfo(file).Length);
    }

    [Fact]
    public void RingOverflowShowsInLost()
    {
        var world = new FlowTestWorld(ringCapacity: 4);
        try
        {
            for (int i = 0; i < 10; i++)
            {
                world.Allowed((ushort)(2000 + i));
            }
            string file = world.NewPath("lost.flows.jsonl");
            using var log = new FlowLog(world.Ring, () => world.Engine.Current, new FlowLogOptions { FilePath = file });
            Assert.Equal(6, log.Lost);
            log.Notify();
            FlowTestWorld.WaitUntil(() => log.LinesWritten == 4, "the four queued events are written");
            log.Dispose();
            Assert.Equal(4, File.ReadAllLines(file).Length);
            Assert.Equal(6, log.Lost);
        }
        finally
        {
            world.Dispose();
        }
    }

    [Fact]
    public void FileOnlyModeCreatesTheFolderAndAPrivateFileAndAppends()
    {
        string file = Path.Combine(_world.Directory, "run", "gateway", "gw1.flows.jsonl");
        using (var log = Start(file, socket: null))
        {
            _world.Allowed();
            log.Notify();
            FlowTestWorld.WaitUntil(() => log.LinesWritten == 1, "one line is written");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(file));
            Assert.Equal(0, log.SocketClients);
        }
        // A second run appends, and tightens a mode someone loosened in between.
        File.SetUnixFileMode(file, (UnixFileMode)0b110_110_110);
        using (var log = Start(file, socket: null))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(file));
            _world.Denied();
        }
        var lines = File.ReadAllLines(file);
        Assert.Equal(2, lines.Length);
        Assert.Equal("DROPPED", JsonDocument.Parse(lines[1]).RootElement.GetProperty("verdict").GetString());
    }

    [Fact]
    public void SocketOnlyModeIsOwnerOnlyAndGoneAfterDispose()
    {
        string sock = _world.NewPath("gw2.flows.sock");
        var log = Start(file: null, sock);
        try
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(sock));
            using var client = FlowTestWorld.Connect(sock);
            FlowTestWorld.WaitUntil(() => log.SocketClients == 1, "the client is adopted");
            _world.Allowed();
            log.Notify();
            var lines = FlowTestWorld.ReadLines(client, 2);
            Assert.True(FlowLogHello.TryParse(lines[0], out var hello));
            Assert.Null(hello.File);
            Assert.Equal(-1, hello.FileOffset);
            Assert.Equal("FORWARDED", JsonDocument.Parse(lines[1]).RootElement.GetProperty("verdict").GetString());

            // A second node on the same socket is refused while this one serves it.
            var second = Assert.Throws<IOException>(() => Start(file: null, sock));
            Assert.Contains("in use", second.Message);

            log.Dispose();
            Assert.False(File.Exists(sock));
            Assert.Equal(0, client.Receive(new byte[16])); // end of stream
        }
        finally
        {
            log.Dispose();
        }
    }

    [Fact]
    public void TheFileIsRotatedPastItsSizeLimit()
    {
        string file = _world.NewPath("rot.flows.jsonl");
        using var log = new FlowLog(_world.Ring, () => _world.Engine.Current, new FlowLogOptions { FilePath = file, MaxFileBytes = 4096 });
        for (int round = 0; round < 2; round++)
        {
            for (int i = 0; i < 10; i++)
            {
                _world.Allowed((ushort)(5000 + round * 10 + i)); // ten lines are well over 4 KiB
            }
            log.Notify();
            int expected = (round + 1) * 10;
            FlowTestWorld.WaitUntil(() => log.LinesWritten == expected, $"{expected} lines are written");
        }
        Assert.Equal(2, log.Rotations);
        var previous = File.ReadAllLines(file + ".1");
        Assert.Equal(10, previous.Length);
        Assert.Contains("\"source_port\":5010,", previous[0]);
        Assert.Equal(0, new FileInfo(file).Length);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(file));
        Assert.Equal(0, log.WriteErrors);
    }

    [Fact]
    public void DisposeWritesWhatIsLeftInTheRing()
    {
        string file = _world.NewPath("drain.flows.jsonl");
        var log = Start(file, socket: null);
        for (int i = 0; i < 700; i++) // more than one batch, and no Notify: only Dispose wakes it
        {
            _world.Allowed((ushort)(3000 + i));
        }
        log.Dispose();
        log.Notify(); // the datapath may still call it while shutting down
        Assert.Equal(700, File.ReadAllLines(file).Length);
        Assert.Equal(700, log.LinesWritten);
        Assert.Equal(0, _world.Ring.Count);
        log.Dispose(); // twice is fine
    }

    [Fact]
    public void ALateClientLearnsHowMuchOfTheFileCameBeforeIt()
    {
        string file = _world.NewPath("late.flows.jsonl");
        string sock = _world.NewPath("late.flows.sock");
        using var log = Start(file, sock);
        _world.Allowed();
        _world.Denied();
        log.Notify();
        FlowTestWorld.WaitUntil(() => log.LinesWritten == 2, "two lines are written");
        using var client = FlowTestWorld.Connect(sock);
        FlowTestWorld.WaitUntil(() => log.SocketClients == 1, "the client is adopted");
        _world.Allowed(40000);
        log.Notify();
        var lines = FlowTestWorld.ReadLines(client, 2);
        Assert.True(FlowLogHello.TryParse(lines[0], out var hello));
        var fileLines = File.ReadAllLines(file);
        Assert.Equal(3, fileLines.Length);
        Assert.Equal(fileLines[0].Length + fileLines[1].Length + 2, hello.FileOffset);
        Assert.Equal(fileLines[2], lines[1]);
    }

    [Fact]
    public void AnEventDecidedBeforeAPolicyReloadStillNamesItsRule()
    {
        string file = _world.NewPath("reload.flows.jsonl");
        using var log = Start(file, socket: null);
        _world.Allowed(1);
        log.Notify();
        FlowTestWorld.WaitUntil(() => log.LinesWritten == 1, "the first line is written");
        long oldVersion = _world.Engine.Current.Version;
        // Decided under the old snapshot, serialized after the reload.
        _world.Allowed(2);
        _world.Apply(FlowTestWorld.Policy);
        Assert.NotEqual(oldVersion, _world.Engine.Current.Version);
        _world.Allowed(3);
        log.Dispose();
        var lines = File.ReadAllLines(file).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal(3, lines.Length);
        Assert.All(lines, l => Assert.Equal("backend-allow-frontend", l.GetProperty("ingress_allowed_by")[0].GetProperty("name").GetString()));
    }

    [Fact]
    public void TheDatapathSideAllocatesNothing()
    {
        string file = _world.NewPath("alloc.flows.jsonl");
        using var log = Start(file, socket: null);
        var e = new FlowEvent { Verdict = FlowVerdict.Forwarded, Key = FlowTestWorld.Tcp("10.1.0.10", 1, "10.2.0.20", 80) };
        for (int i = 0; i < 100; i++)
        {
            _world.Ring.TryWrite(e);
            log.Notify();
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            _world.Ring.TryWrite(e);
            log.Notify();
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void ArgumentsAreCheckedOnce()
    {
        Assert.Throws<ArgumentException>(() => new FlowLog(_world.Ring, () => null, new FlowLogOptions()));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FlowLog(_world.Ring, () => null,
            new FlowLogOptions { FilePath = _world.NewPath("x.jsonl"), MaxClientBacklogBytes = 0 }));
        Assert.Throws<ArgumentNullException>(() => new FlowLog(null!, () => null, new FlowLogOptions { FilePath = "x" }));
    }

    [Fact]
    public void DefaultPathsFollowTheInterfaceName()
    {
        Assert.Equal("/var/run/gateway/gw0.flows.jsonl", FlowLogPaths.FileFor("gw0"));
        Assert.Equal("/var/run/gateway/gw0.flows.sock", FlowLogPaths.SocketFor("gw0"));
        Assert.Equal("/tmp/x/wg1.flows.sock", FlowLogPaths.SocketFor("wg1", "/tmp/x"));
        Assert.Equal("/var/log/gw/a.flows.sock", FlowLogPaths.SocketForFile("/var/log/gw/a.flows.jsonl"));
        Assert.Equal("/var/log/flows.json.sock", FlowLogPaths.SocketForFile("/var/log/flows.json"));
        Assert.Throws<ArgumentException>(() => FlowLogPaths.FileFor("../etc"));
        Assert.Throws<ArgumentException>(() => FlowLogPaths.FileFor("averyveryverylongname"));
        Assert.Throws<ArgumentException>(() => FlowLogPaths.FileFor(""));
    }

    [Fact]
    public void ForInterfaceUsesTheDefaultNames()
    {
        using var log = FlowLog.ForInterface(_world.Ring, () => _world.Engine.Current, "gwt0", "node-b", _world.Directory);
        Assert.Equal(Path.Combine(_world.Directory, "gwt0.flows.jsonl"), log.FilePath);
        Assert.Equal(Path.Combine(_world.Directory, "gwt0.flows.sock"), log.SocketPath);
        Assert.True(File.Exists(log.FilePath));
        Assert.Equal("node-b", log.NodeName);
    }
}
