using System.CommandLine;
using System.Diagnostics;
using Gateway.Crypto;
using Gateway.Node.Uapi;

namespace Gateway.Cli.Tests;

public sealed class ShowCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"gw-show-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(args);

    [Fact]
    public async Task RendersAUapiReplyLikeWgShow()
    {
        using var priv = WireGuardKey.GeneratePrivate();
        using var pub = priv.DerivePublic();
        using var peer = WireGuardKey.GeneratePrivate().DerivePublic();
        long handshake = DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 65;
        string reply =
            $"private_key={priv.ToHex()}\nlisten_port=51820\n" +
            $"public_key={peer.ToHex()}\npreshared_key={new string('0', 64)}\nendpoint=192.0.2.1:51820\n" +
            $"last_handshake_time_sec={handshake}\nlast_handshake_time_nsec=0\ntx_bytes=2048\nrx_bytes=100\n" +
            "persistent_keepalive_interval=25\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\nprotocol_version=1\nerrno=0\n\n";
        await using var server = UapiSocketServer.Start("gwshow0", _ => reply, _dir);
        var (code, output, err) = Run("show", "gwshow0", "--uapi-dir", _dir);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        string expected =
            "interface: gwshow0\n" +
            $"  public key: {pub.ToBase64()}\n" +
            "  private key: (hidden)\n" +
            "  listening port: 51820\n" +
            "\n" +
            $"peer: {peer.ToBase64()}\n" +
            "  endpoint: 192.0.2.1:51820\n" +
            "  allowed ips: 10.0.0.2/32, fd00::2/128\n";
        Assert.StartsWith(expected, output);
        Assert.Matches(@"  latest handshake: 1 minute, [5-9] seconds ago\n", output);
        Assert.EndsWith("  transfer: 100 B received, 2.00 KiB sent\n  persistent keepalive: every 25 seconds\n", output);
    }

    [Fact]
    public void AMissingInterfaceIsAOneLineError()
    {
        var (code, _, err) = Run("show", "nosuchif0", "--uapi-dir", _dir);
        Assert.Equal(1, code);
        Assert.StartsWith("gateway: cannot reach interface 'nosuchif0'", err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    [SkippableFact]
    public void MatchesWgShowAgainstARealWireguardGo()
    {
        Skip.IfNot(Environment.UserName == "root", "needs root to run wireguard-go");
        Skip.IfNot(File.Exists("/usr/bin/wireguard-go") && File.Exists("/usr/bin/wg"), "needs wireguard-go and wg (scripts/setup.sh installs them)");
        string ns = $"gwshow{Environment.ProcessId}";
        string iface = $"gws{Environment.ProcessId % 100000}";
        Process? daemon = null;
        try
        {
            Sh($"ip netns add {ns}");
            var psi = new ProcessStartInfo("ip", $"netns exec {ns} wireguard-go -f {iface}")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.Environment["WG_PROCESS_FOREGROUND"] = "1";
            daemon = Process.Start(psi)!;
            string sock = UapiClient.SocketPath(iface);
            var wait = Stopwatch.StartNew();
            while (!File.Exists(sock) && wait.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(20); // waiting for an external process to create its socket, not for protocol time
            }
            Assert.True(File.Exists(sock), "wireguard-go did not create its UAPI socket");
            using var priv = WireGuardKey.GeneratePrivate();
            using var peer = WireGuardKey.GeneratePrivate().DerivePublic();
            string keyFile = Path.Combine(Path.GetTempPath(), $"gwshow-{Environment.ProcessId}.key");
            File.WriteAllText(keyFile, priv.ToBase64() + "\n");
            try
            {
                Sh($"ip netns exec {ns} wg set {iface} listen-port 51999 private-key {keyFile} peer {peer.ToBase64()} " +
                   "allowed-ips 10.9.0.2/32,fd00:9::2/128 endpoint 127.0.0.1:51998 persistent-keepalive 0");
            }
            finally
            {
                File.Delete(keyFile);
            }
            string wgShow = Sh($"wg show {iface}");
            var (code, output, err) = Run("show", iface);
            Assert.Equal(0, code);
            Assert.Equal("", err);
            Assert.Equal(wgShow.TrimEnd(), output.TrimEnd());
        }
        finally
        {
            if (daemon is { HasExited: false })
            {
                daemon.Kill(entireProcessTree: true);
                daemon.WaitForExit(5000);
            }
            daemon?.Dispose();
            Sh($"ip netns del {ns}", check: false);
        }
    }

    private static string Sh(string command, bool check = true)
    {
        var psi = new ProcessStartInfo("/bin/sh", ["-c", command]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (check && p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{command}: {error}");
        }
        return output;
    }
}
