using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Tunnel.Uapi;
using Xunit.Abstractions;

namespace Gateway.Tunnel.Tests.Integration;

/// <summary>
/// The engine, driven by a small UDP loop in one network namespace, against stock wireguard-go
/// configured with `wg` in another, over a veth pair. Traffic stays inside the two namespaces.
/// <code>
///   ns gwi{pid}g                                   ns gwi{pid}e
///   wireguard-go gwg{pid}  10.77.0.1/24            engine (this process, setns thread)
///   veth 172.31.77.1:51820  &lt;----- veth -----&gt;    veth 172.31.77.2:51821, tunnel addr 10.77.0.2
/// </code>
/// </summary>
public class WireGuardGoInteropTests(ITestOutputHelper log)
{
    private static readonly IpAddress GoTunnel = IpAddress.Parse("10.77.0.1");
    private static readonly IpAddress EngineTunnel = IpAddress.Parse("10.77.0.2");

    /// <summary>The engine's "device": a UDP socket opened inside the namespace and a receive loop
    /// that answers ICMP echo requests and records echo replies.</summary>
    private sealed class EngineLoop : ITunnelOutput, IDisposable
    {
        private readonly Socket _socket;
        private readonly Thread _thread;
        private volatile bool _stop;
        public WireGuardEngine Engine = null!;
        public readonly ConcurrentDictionary<ushort, bool> EchoReplies = new();
        public int EchoRequestsAnswered;
        public int Undecryptable;
        private readonly object _sendLock = new();

        public EngineLoop(string ns, IPEndPoint bind)
        {
            Socket? socket = null;
            Exception? failure = null;
            // A socket keeps the namespace it was created in: create it on a thread that joined ns.
            var t = new Thread(() =>
            {
                try
                {
                    NetworkNamespace.Enter(ns);
                    socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                    socket.Bind(bind);
                }
                catch (Exception e) { failure = e; }
            });
            t.Start();
            t.Join();
            if (failure is not null) throw failure;
            _socket = socket!;
            _thread = new Thread(Run) { IsBackground = true, Name = "engine-loop" };
        }

        public void Start() => _thread.Start();

        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram)
        {
            lock (_sendLock) _socket.SendTo(datagram, SocketFlags.None, destination.ToIPEndPoint());
        }

        public TunnelResult SendPacket(byte[] ipPacket)
        {
            var buffer = new byte[ipPacket.Length + 64];
            var r = Engine.Encapsulate(ipPacket, buffer);
            if (r.Action == TunnelAction.SendToNetwork) SendDatagram(r.Endpoint, buffer.AsSpan(r.Offset, r.Length));
            return r;
        }

        private void Run()
        {
            var buffer = new byte[65536];
            var lastTick = Stopwatch.StartNew();
            while (!_stop)
            {
                if (lastTick.ElapsedMilliseconds >= 100)
                {
                    Engine.Tick();
                    lastTick.Restart();
                }
                if (!_socket.Poll(50_000, SelectMode.SelectRead)) continue;
                EndPoint remote = new IPEndPoint(IPAddress.Any, 0);
                int n;
                try { n = _socket.ReceiveFrom(buffer, ref remote); } catch (SocketException) { continue; } catch (ObjectDisposedException) { return; }
                var r = Engine.Decapsulate(IpEndpoint.FromIPEndPoint((IPEndPoint)remote), buffer.AsSpan(0, n));
                if (r.Action == TunnelAction.Drop) Interlocked.Increment(ref Undecryptable);
                if (r.Action != TunnelAction.DeliverToTun) continue;
                var inner = buffer.AsSpan(r.Offset, r.Length);
                if (inner.Length < 28 || inner[0] != 0x45 || inner[9] != 1) continue;
                byte type = inner[20];
                ushort seq = BinaryPrimitives.ReadUInt16BigEndian(inner[26..]);
                if (type == 0 && Packets.Checksum(inner[20..]) == 0) EchoReplies[seq] = true;
                else if (type == 8)
                {
                    // Answer the echo request like a host at 10.77.0.2 would.
                    var reply = inner.ToArray();
                    inner.Slice(12, 4).CopyTo(reply.AsSpan(16));
                    inner.Slice(16, 4).CopyTo(reply.AsSpan(12));
                    reply[20] = 0;
                    reply[22] = reply[23] = 0;
                    BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(22), Packets.Checksum(reply.AsSpan(20)));
                    reply[10] = reply[11] = 0;
                    BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(10), Packets.Checksum(reply.AsSpan(0, 20)));
                    if (SendPacket(reply).Action != TunnelAction.Drop) Interlocked.Increment(ref EchoRequestsAnswered);
                }
            }
        }

        public void Dispose()
        {
            _stop = true;
            if (_thread.IsAlive) _thread.Join(2000);
            _socket.Dispose();
        }
    }

    /// <summary>Debian bookworm's build and bookworm-backports' (which scripts/setup.sh unpacks privately).</summary>
    [SkippableTheory]
    [InlineData("/usr/bin/wireguard-go")]
    [InlineData("/opt/wireguard-go-20231211/usr/bin/wireguard-go")]
    public void Engine_interoperates_with_stock_wireguard_go(string binary)
    {
        string? reason = Shell.SkipReason("wg", "ip", "ping");
        Skip.If(reason is not null, reason);
        Skip.IfNot(File.Exists(binary), $"needs {binary} (scripts/setup.sh installs it)");
        Skip.IfNot(File.Exists("/dev/net/tun"), "needs /dev/net/tun for wireguard-go");

        int pid = Environment.ProcessId;
        string nsGo = $"gwi{pid}g", nsEng = $"gwi{pid}e", vethGo = $"gwv{pid}g", vethEng = $"gwv{pid}e", wgIf = $"gwg{pid}";
        string dir = Directory.CreateTempSubdirectory("gwt-interop").FullName;
        Process? wireguardGo = null;
        EngineLoop? loop = null;
        WireGuardEngine? engine = null;
        try
        {
            Shell.Run("ip", $"netns add {nsGo}");
            Shell.Run("ip", $"netns add {nsEng}");
            Shell.Run("ip", $"link add {vethGo} netns {nsGo} type veth peer name {vethEng} netns {nsEng}");
            Shell.Run("ip", $"-n {nsGo} addr add 172.31.77.1/24 dev {vethGo}");
            Shell.Run("ip", $"-n {nsEng} addr add 172.31.77.2/24 dev {vethEng}");
            foreach (var (ns, dev) in new[] { (nsGo, vethGo), (nsEng, vethEng), (nsGo, "lo"), (nsEng, "lo") })
                Shell.Run("ip", $"-n {ns} link set {dev} up");

            var psi = new ProcessStartInfo("ip", $"netns exec {nsGo} {binary} -f {wgIf}")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.Environment["WG_PROCESS_FOREGROUND"] = "1";
            wireguardGo = Process.Start(psi)!;
            wireguardGo.OutputDataReceived += (_, e) => { };
            wireguardGo.ErrorDataReceived += (_, e) => { };
            wireguardGo.BeginOutputReadLine();
            wireguardGo.BeginErrorReadLine();
            Assert.True(Shell.WaitUntil(() => File.Exists($"/var/run/wireguard/{wgIf}.sock") || wireguardGo.HasExited, 10_000), "wireguard-go did not start");
            Assert.False(wireguardGo.HasExited, "wireguard-go exited");

            using var goKey = WireGuardKey.GeneratePrivate();
            using var goPub = goKey.DerivePublic();
            using var engineKey = WireGuardKey.GeneratePrivate();
            using var enginePub = engineKey.DerivePublic();
            string goKeyFile = WriteSecret(dir, "go.key", goKey.ToBase64());

            Shell.Run("ip", $"netns exec {nsGo} wg set {wgIf} private-key {goKeyFile} listen-port 51820 peer {enginePub.ToBase64()} allowed-ips {EngineTunnel}/32 endpoint 172.31.77.2:51821");
            Shell.Run("ip", $"-n {nsGo} addr add {GoTunnel}/24 dev {wgIf}");
            Shell.Run("ip", $"-n {nsGo} link set {wgIf} up");

            loop = new EngineLoop(nsEng, new IPEndPoint(IPAddress.Parse("172.31.77.2"), 51821));
            engine = new WireGuardEngine(loop);
            loop.Engine = engine;
            engine.SetPrivateKey(engineKey.Bytes);
            var peer = engine.GetOrAddPeer(new PublicKey(goPub.Bytes));
            engine.AddAllowedIp(peer, new IpPrefix(GoTunnel, 32));
            engine.SetEndpoint(peer, new IpEndpoint(IpAddress.Parse("172.31.77.1"), 51820));
            loop.Start();

            // 1. The engine initiates; 1,000 echo requests come back as replies.
            PingFromEngine(loop, 0, 1000);
            Assert.True(engine.GetCount(TunnelEvent.ResponseProcessed) >= 1);
            Assert.Equal(0, engine.GetCount(TunnelEvent.InitiationProcessed));
            log.WriteLine($"phase 1: {loop.EchoReplies.Count} replies");

            // 2. wg show transfer on the wireguard-go side matches the engine's counters.
            var (baseTx, baseRx) = CheckTransfer(nsGo, wgIf, peer, 0, 0);

            // 3. wireguard-go changes its private key; the engine learns the new public key
            //    (through UAPI, as `wg set` would send it). wireguard-go then initiates.
            using var goKey2 = WireGuardKey.GeneratePrivate();
            using var goPub2 = goKey2.DerivePublic();
            string goKeyFile2 = WriteSecret(dir, "go2.key", goKey2.ToBase64());
            Shell.Run("ip", $"netns exec {nsGo} wg set {wgIf} private-key {goKeyFile2}");
            string set = "set=1\n" +
                         $"public_key={goPub.ToHex()}\nremove=true\n" +
                         $"public_key={goPub2.ToHex()}\nendpoint=172.31.77.1:51820\nreplace_allowed_ips=true\nallowed_ip={GoTunnel}/32\n\n";
            Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, set));
            var (exit, pingOut) = Shell.Try("ip", $"netns exec {nsGo} ping -c 5 -i 0.2 -W 3 {EngineTunnel}");
            log.WriteLine(pingOut);
            Assert.Equal(0, exit);
            Assert.Contains(" 0% packet loss", pingOut);
            Assert.True(engine.GetCount(TunnelEvent.InitiationProcessed) >= 1, "wireguard-go should have initiated");
            Assert.True(loop.EchoRequestsAnswered >= 5);

            // 4. Traffic continues from the engine's side on the new session.
            Assert.True(engine.TryGetPeer(new PublicKey(goPub2.Bytes), out var peer2));
            PingFromEngine(loop, 5000, 200);
            // wireguard-go kept the same peer (our key did not change): its counters continue from
            // the first session's totals, the engine's new peer object starts from zero.
            CheckTransfer(nsGo, wgIf, peer2, baseTx, baseRx);
            Assert.Equal(0, loop.Undecryptable);
        }
        finally
        {
            loop?.Dispose();
            engine?.Dispose();
            if (wireguardGo is not null)
            {
                try { if (!wireguardGo.HasExited) wireguardGo.Kill(entireProcessTree: true); wireguardGo.WaitForExit(5000); } catch (InvalidOperationException) { }
                wireguardGo.Dispose();
            }
            Shell.Try("ip", $"netns del {nsGo}");
            Shell.Try("ip", $"netns del {nsEng}");
            try { File.Delete($"/var/run/wireguard/{wgIf}.sock"); } catch (IOException) { }
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string WriteSecret(string dir, string name, string content)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, "");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(path, content + "\n");
        return path;
    }

    private static void PingFromEngine(EngineLoop loop, int firstSeq, int count)
    {
        // The first request is staged until the handshake completes; then the rest follow,
        // at most 100 unanswered at a time.
        loop.SendPacket(Packets.Icmp4(EngineTunnel, GoTunnel, (ushort)firstSeq, 56));
        Assert.True(Shell.WaitUntil(() => loop.EchoReplies.ContainsKey((ushort)firstSeq), 10_000), "no reply to the first echo request");
        for (int i = 1; i < count; i++)
        {
            int seq = firstSeq + i;
            Shell.WaitUntil(() => seq - firstSeq - CountReplies(loop, firstSeq, count) < 100, 5_000);
            var r = loop.SendPacket(Packets.Icmp4(EngineTunnel, GoTunnel, (ushort)seq, 56 + i % 64));
            Assert.NotEqual(TunnelAction.Drop, r.Action);
        }
        Assert.True(Shell.WaitUntil(() => CountReplies(loop, firstSeq, count) == count, 15_000),
            $"only {CountReplies(loop, firstSeq, count)} of {count} echo replies");
    }

    private static int CountReplies(EngineLoop loop, int firstSeq, int count)
    {
        int n = 0;
        for (int s = firstSeq; s < firstSeq + count; s++) if (loop.EchoReplies.ContainsKey((ushort)s)) n++;
        return n;
    }

    /// <summary>wg counts whole datagrams (handshakes and transport) both ways, like the engine.</summary>
    private (long Tx, long Rx) CheckTransfer(string nsGo, string wgIf, Peer peer, long baseTx, long baseRx)
    {
        (long Rx, long Tx) GoSide()
        {
            var line = Shell.Run("ip", $"netns exec {nsGo} wg show {wgIf} transfer").Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Single(l => l.StartsWith(peer.Engine.LocalPublicKey!.Value.ToBase64(), StringComparison.Ordinal));
            var f = line.Split('\t');
            return (long.Parse(f[1]), long.Parse(f[2]));
        }
        (long, long, long, long) Snapshot() { var g = GoSide(); return (g.Rx, g.Tx, baseTx + peer.TxBytes, baseRx + peer.RxBytes); }
        // Wait until both sides agree and are quiet (no datagram in flight).
        var last = Snapshot();
        bool stable = Shell.WaitUntil(() =>
        {
            var now = Snapshot();
            bool same = now == last && now.Item1 == now.Item3 && now.Item2 == now.Item4;
            last = now;
            return same;
        }, 10_000);
        log.WriteLine($"wireguard-go rx={last.Item1} tx={last.Item2}; engine tx={last.Item3} rx={last.Item4}");
        Assert.True(stable, $"transfer mismatch: wireguard-go rx={last.Item1} tx={last.Item2}, engine tx={last.Item3} rx={last.Item4}");
        Assert.True(peer.TxBytes > 0 && peer.RxBytes > 0);
        return (last.Item3, last.Item4);
    }
}
