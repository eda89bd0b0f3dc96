using System.Text;
using Gateway.Datapath;
using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.Node.Overlay;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Tests.Daemon;

/// <summary>
/// Issue 14 item 5: reloads and timer callbacks catch everything, log one clear line and keep the
/// last good state. Failures are injected between reloads (a config or endpoints file made
/// unreadable or invalid, a source or a tick that throws) on the in-memory nodes; forwarding
/// with the old state is checked with packets through both nodes.
/// </summary>
public sealed class ReloadFailureTests
{
    /// <summary>A log writer tests can read while the node's threads write.</summary>
    private sealed class LockedLog : TextWriter
    {
        private readonly StringBuilder _text = new();

        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            lock (_text) _text.Append(value);
        }

        public override void WriteLine(string? value)
        {
            lock (_text) _text.Append(value).Append('\n');
        }

        public string[] Lines(string containing)
        {
            lock (_text)
            {
                return _text.ToString().Split('\n').Where(l => l.Contains(containing, StringComparison.Ordinal)).ToArray();
            }
        }
    }

    private static void AssertForwards(MemoryNodes nodes)
    {
        nodes.TunA.InjectPacket(MemoryNodes.Udp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 7, 7, 100));
        MemoryNodes.Take(nodes.TunB);
        nodes.TunB.InjectPacket(MemoryNodes.Udp4(MemoryNodes.AddressB, MemoryNodes.AddressA, 7, 7, 100));
        MemoryNodes.Take(nodes.TunA);
    }

    [Fact]
    public async Task A_config_file_made_unreadable_or_invalid_keeps_the_peers_sessions_and_forwarding()
    {
        var log = new LockedLog();
        await using var nodes = new MemoryNodes(logA: log);
        nodes.Handshake();
        AssertForwards(nodes);
        string path = Path.Combine(nodes.Folder, "a.conf");
        string good = File.ReadAllText(path);
        var peer = nodes.A.Engine.Peers.Single();
        var session = peer.LastHandshake;

        // Unreadable: the file's name now holds a directory.
        File.Delete(path);
        Directory.CreateDirectory(path);
        Assert.False(nodes.A.ReloadFile(path));
        Assert.Single(log.Lines("reload failed, previous configuration stays in force"));
        AssertForwards(nodes);

        // Invalid: a key the format does not have.
        Directory.Delete(path);
        File.WriteAllText(path, good + "\nThisIsNotAKey = 1\n");
        Assert.False(nodes.A.ReloadFile(path));
        var failures = log.Lines("reload failed, previous configuration stays in force");
        Assert.Equal(2, failures.Length);
        Assert.Contains("unknown key 'ThisIsNotAKey'", failures[1]);
        Assert.Same(peer, nodes.A.Engine.Peers.Single());
        Assert.Equal(session, peer.LastHandshake);
        AssertForwards(nodes);

        // The good file again: reloaded, same session.
        File.WriteAllText(path, good);
        Assert.True(nodes.A.ReloadFile(path));
        Assert.Equal(session, nodes.A.Engine.Peers.Single().LastHandshake);
        AssertForwards(nodes);
    }

    [Fact]
    public async Task An_endpoints_file_made_unreadable_keeps_the_policy_in_force()
    {
        var log = new LockedLog();
        await using var nodes = new MemoryNodes(overlay: true, logA: log);
        var overlay = nodes.A.Overlay!;
        long version = overlay.Policy.Current.Version;
        string endpoints = Path.Combine(nodes.Folder, "endpoints.yaml");
        string good = File.ReadAllText(endpoints);
        File.Delete(endpoints);
        Directory.CreateDirectory(endpoints);
        Assert.False(overlay.ReloadPolicy());
        Assert.Single(log.Lines("policy reload failed, previous policy stays in force"));
        Assert.Equal(version, overlay.Policy.Current.Version);
        Directory.Delete(endpoints);
        File.WriteAllText(endpoints, good);
        Assert.True(overlay.ReloadPolicy());
    }

    /// <summary>Loads from the files, then throws what no loader is documented to throw.</summary>
    private sealed class FailingSource : IOverlaySource
    {
        public bool Fail { get; set; }

        public (PolicySet Policies, EndpointTable Endpoints) Load(OverlaySection settings, IdentityAllocator identities) =>
            Fail ? throw new InvalidOperationException("a stage failed") : FileOverlaySource.Instance.Load(settings, identities);
    }

    [Fact]
    public async Task A_stage_that_throws_during_a_policy_reload_is_caught_and_the_policy_stays()
    {
        await using var nodes = new MemoryNodes(overlay: true);
        var config = WgQuickConfig.Load(Path.Combine(nodes.Folder, "a.conf"));
        try
        {
            var log = new LockedLog();
            var source = new FailingSource();
            using var engine = new WireGuardEngine(new NullOutput(), new WireGuardEngineOptions { Clock = nodes.Clock });
            using var runtime = OverlayRuntime.Create(config, engine, "mem", new NodeLog(log), nodes.Clock, source);
            long version = runtime.Policy.Current.Version;
            int endpoints = runtime.Policy.Current.Endpoints.All.Count;
            source.Fail = true;
            Assert.False(runtime.ReloadPolicy());
            Assert.False(runtime.ReloadPolicy());
            var lines = log.Lines("policy reload failed, previous policy stays in force");
            Assert.Equal(2, lines.Length);
            Assert.Contains("InvalidOperationException: a stage failed", lines[0]);
            Assert.Equal(version, runtime.Policy.Current.Version);
            Assert.Equal(endpoints, runtime.Policy.Current.Endpoints.All.Count);
            Assert.Equal(2, runtime.PolicyLoadFailures);
        }
        finally
        {
            config.Dispose();
        }
    }

    private sealed class NullOutput : ITunnelOutput
    {
        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram)
        {
        }
    }

    [Fact]
    public void A_tick_that_throws_is_logged_once_per_failure_and_the_next_tick_runs()
    {
        var log = new LockedLog();
        var failures = new TickFailures(new NodeLog(log));
        int ran = 0;
        for (int i = 0; i < 5; i++)
        {
            Assert.False(failures.Run(() => throw new InvalidOperationException("boom")));
        }
        Assert.True(failures.Run(() => ran++));
        Assert.False(failures.Run(() => throw new InvalidOperationException("boom")));
        Assert.Equal(1, ran);
        Assert.Equal(6, failures.Count);
        // Five identical failures in a row are one line; after a good tick the next failure is news.
        var lines = log.Lines("timers: tick failed");
        Assert.Equal(2, lines.Length);
        Assert.Contains("InvalidOperationException: boom", lines[0]);
    }
}
