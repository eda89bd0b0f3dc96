using System.Net.Sockets;
using System.Text;
using Gateway.Datapath;
using Gateway.Tunnel.Uapi;

namespace Gateway.Tunnel.Tests.Integration;

/// <summary>
/// Drives UapiProtocol with the real `wg` tool: the test serves /var/run/wireguard/NAME.sock
/// (the path wg probes for userspace implementations) and runs `wg set` / `wg show` against it.
/// </summary>
public class WgToolUapiTests
{
    private sealed class UapiSocketStub : IDisposable
    {
        private readonly Socket _listener;
        private readonly Thread _thread;
        private readonly WireGuardEngine _engine;
        public readonly string Path;
        private volatile bool _stop;

        public UapiSocketStub(WireGuardEngine engine, string name)
        {
            _engine = engine;
            Directory.CreateDirectory("/var/run/wireguard");
            Path = $"/var/run/wireguard/{name}.sock";
            File.Delete(Path);
            _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listener.Bind(new UnixDomainSocketEndPoint(Path));
            File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            _listener.Listen(4);
            _thread = new Thread(Serve) { IsBackground = true };
            _thread.Start();
        }

        private void Serve()
        {
            while (!_stop)
            {
                Socket client;
                try { client = _listener.Accept(); } catch (SocketException) { return; } catch (ObjectDisposedException) { return; }
                using (client)
                {
                    var text = new StringBuilder();
                    var buffer = new byte[4096];
                    while (true)
                    {
                        int n;
                        try { n = client.Receive(buffer); } catch (SocketException) { break; }
                        if (n == 0) break;
                        text.Append(Encoding.ASCII.GetString(buffer, 0, n));
                        string s = text.ToString();
                        // A request is complete at its blank line.
                        if (s.StartsWith("get=1\n") && s.Length >= 7) break;
                        if (s.StartsWith("set=1\n") && s.EndsWith("\n\n")) break;
                    }
                    string? reply = UapiProtocol.Handle(_engine, text.ToString());
                    if (reply is not null) client.Send(Encoding.ASCII.GetBytes(reply));
                }
            }
        }

        public void Dispose()
        {
            _stop = true;
            _listener.Dispose();
            File.Delete(Path);
        }
    }

    [SkippableFact]
    public void Wg_set_and_wg_show_dump_round_trip_through_the_engine()
    {
        string? reason = Shell.SkipReason("wg");
        Skip.If(reason is not null, reason);
        string name = $"gwu{Environment.ProcessId}";
        var output = new CapturingOutput();
        using var engine = new WireGuardEngine(output);
        using var stub = new UapiSocketStub(engine, name);
        string dir = Directory.CreateTempSubdirectory("gwt-uapi").FullName;
        try
        {
            using var sk = Gateway.Crypto.WireGuardKey.GeneratePrivate();
            using var psk = Gateway.Crypto.WireGuardKey.GeneratePreshared();
            using var peerPrivate = Gateway.Crypto.WireGuardKey.GeneratePrivate();
            using var peerKey = peerPrivate.DerivePublic();
            string skFile = Path.Combine(dir, "sk"), pskFile = Path.Combine(dir, "psk");
            File.WriteAllText(skFile, sk.ToBase64() + "\n");
            File.WriteAllText(pskFile, psk.ToBase64() + "\n");
            File.SetUnixFileMode(skFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            File.SetUnixFileMode(pskFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);

            Shell.Run("wg", $"set {name} private-key {skFile} listen-port 51999 fwmark 0x1234 peer {peerKey.ToBase64()} preshared-key {pskFile} endpoint [fd00::1]:51820 allowed-ips 10.0.0.0/8,fd00::/64");
            Assert.Equal((ushort)51999, engine.ListenPort);
            Assert.Equal(0x1234u, engine.FwMark);
            Assert.Equal(sk.DerivePublic().ToBase64(), engine.LocalPublicKey!.Value.ToBase64());
            var peer = Assert.Single(engine.Peers);
            Assert.Equal(peerKey.ToBase64(), peer.PublicKey.ToBase64());
            Assert.Equal(new IpEndpoint(IpAddress.Parse("fd00::1"), 51820), peer.Endpoint);

            string dump = Shell.Run("wg", $"show {name} dump");
            var lines = dump.TrimEnd('\n').Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.Equal([sk.ToBase64(), sk.DerivePublic().ToBase64(), "51999", "0x1234"], lines[0].Split('\t'));
            Assert.Equal([peerKey.ToBase64(), psk.ToBase64(), "[fd00::1]:51820", "10.0.0.0/8,fd00::/64", "0", "0", "0", "off"], lines[1].Split('\t'));

            // `wg set ... allowed-ips` replaces the list (replace_allowed_ips=true first).
            Shell.Run("wg", $"set {name} peer {peerKey.ToBase64()} allowed-ips 192.168.7.0/24 persistent-keepalive 25");
            dump = Shell.Run("wg", $"show {name} dump");
            var fields = dump.TrimEnd('\n').Split('\n')[1].Split('\t');
            Assert.Equal("192.168.7.0/24", fields[3]);
            Assert.Equal("25", fields[7]);
            Assert.Equal(Messages.InitiationSize.ToString(), fields[6]); // turning keepalive on started a handshake

            Assert.Contains("192.168.7.0/24", Shell.Run("wg", $"show {name} allowed-ips"));
            Shell.Run("wg", $"set {name} peer {peerKey.ToBase64()} remove");
            Assert.Equal(0, engine.PeerCount);
            Assert.Single(Shell.Run("wg", $"show {name} dump").TrimEnd('\n').Split('\n'));
            // Everything the engine emitted went to the capture, never to a network.
            Assert.All(output.Sent, s => Assert.Equal(new IpEndpoint(IpAddress.Parse("fd00::1"), 51820), s.To));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
