using Gateway.Datapath;
using Gateway.Tunnel.Uapi;

namespace Gateway.Tunnel.Tests;

public class UapiTests
{
    private const string KeyA = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
    private const string Psk = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
    private const string Zero = "0000000000000000000000000000000000000000000000000000000000000000";

    private static (WireGuardEngine Engine, FakeClock Clock, CapturingOutput Output) NewEngine()
    {
        var clock = new FakeClock();
        var output = new CapturingOutput();
        return (new WireGuardEngine(output, new WireGuardEngineOptions { Clock = clock }), clock, output);
    }

    private static string Hex(byte[] b) => Convert.ToHexStringLower(b);

    [Fact]
    public void Wg_set_with_every_option_applies_and_get_prints_it_in_wireguard_go_order()
    {
        var (engine, _, _) = NewEngine();
        using var _e = engine;
        var sk = new byte[32];
        Gateway.Crypto.X25519.GeneratePrivateKey(sk);
        // Exactly what wireguard-tools' userspace_set_device writes for
        // `wg set wg0 private-key F listen-port 51820 fwmark 0x1234 peer K preshared-key F2
        //  endpoint [fd00::1]:51820 persistent-keepalive 25 allowed-ips 10.0.0.0/8,fd00::/64`
        string request =
            "set=1\n" +
            $"private_key={Hex(sk)}\n" +
            "listen_port=51820\n" +
            "fwmark=4660\n" +
            $"public_key={KeyA}\n" +
            $"preshared_key={Psk}\n" +
            "endpoint=[fd00::1]:51820\n" +
            "persistent_keepalive_interval=25\n" +
            "replace_allowed_ips=true\n" +
            "allowed_ip=10.0.0.0/8\n" +
            "allowed_ip=fd00::/64\n" +
            "\n";
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, request));
        Assert.Equal((ushort)51820, engine.ListenPort);
        Assert.Equal(0x1234u, engine.FwMark);

        string expected =
            $"private_key={Hex(sk)}\n" +
            "listen_port=51820\n" +
            "fwmark=4660\n" +
            $"public_key={KeyA}\n" +
            $"preshared_key={Psk}\n" +
            "protocol_version=1\n" +
            "endpoint=[fd00::1]:51820\n" +
            "last_handshake_time_sec=0\n" +
            "last_handshake_time_nsec=0\n" +
            $"tx_bytes={engine.Peers[0].TxBytes}\n" +   // the keepalive-triggered initiation was sent
            "rx_bytes=0\n" +
            "persistent_keepalive_interval=25\n" +
            "allowed_ip=10.0.0.0/8\n" +
            "allowed_ip=fd00::/64\n" +
            "errno=0\n\n";
        Assert.Equal(expected, UapiProtocol.Handle(engine, "get=1\n\n"));
        Assert.Equal(Messages.InitiationSize, engine.Peers[0].TxBytes); // keepalive on enable -> handshake
    }

    [Fact]
    public void Wg_set_allowed_ips_replaces_the_previous_list()
    {
        var (engine, _, _) = NewEngine();
        using var _e = engine;
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\npublic_key={KeyA}\nallowed_ip=192.168.0.0/16\n\n"));
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\npublic_key={KeyA}\nallowed_ip=10.1.0.0/16\n\n"));
        Assert.Equal(2, engine.Peers[0].AllowedIps.Count); // without replace they accumulate
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\npublic_key={KeyA}\nreplace_allowed_ips=true\nallowed_ip=10.2.0.0/16\n\n"));
        Assert.Equal([IpPrefix.Parse("10.2.0.0/16")], engine.Peers[0].AllowedIps);
        Assert.False(engine.TryRoute(IpAddress.Parse("192.168.1.1"), out _));
    }

    [Fact]
    public void Remove_update_only_replace_peers_and_own_key()
    {
        var (engine, _, _) = NewEngine();
        using var _e = engine;
        var sk = new byte[32];
        Gateway.Crypto.X25519.GeneratePrivateKey(sk);
        var pk = new byte[32];
        Gateway.Crypto.X25519.DerivePublicKey(sk, pk);
        string keyB = KeyA.Replace('a', 'c');
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\nprivate_key={Hex(sk)}\npublic_key={KeyA}\npublic_key={Hex(pk)}\nallowed_ip=10.0.0.0/8\n\n"));
        Assert.Equal(1, engine.PeerCount); // our own key is a dummy
        Assert.False(engine.TryRoute(IpAddress.Parse("10.0.0.1"), out _));
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\npublic_key={keyB}\nupdate_only=true\nallowed_ip=10.0.0.0/8\n\n"));
        Assert.Equal(1, engine.PeerCount); // update_only does not create
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\npublic_key={KeyA}\nupdate_only=true\nendpoint=192.0.2.1:1\n\n"));
        Assert.Equal(new IpEndpoint(IpAddress.Parse("192.0.2.1"), 1), engine.Peers[0].Endpoint);
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\npublic_key={KeyA}\nremove=true\n\n"));
        Assert.Equal(0, engine.PeerCount);
        UapiProtocol.Handle(engine, $"set=1\npublic_key={KeyA}\npublic_key={keyB}\n\n");
        Assert.Equal(2, engine.PeerCount);
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\nreplace_peers=true\npublic_key={keyB}\n\n"));
        Assert.Equal(1, engine.PeerCount);
        // A zero private key removes it; get then prints no private_key line.
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, $"set=1\nprivate_key={Zero}\n\n"));
        Assert.Null(engine.LocalPublicKey);
        Assert.StartsWith("public_key=", UapiProtocol.Handle(engine, "get=1\n\n"));
    }

    [Theory]
    [InlineData("listen_port\n", UapiErrno.Protocol)]
    [InlineData("bogus=1\n", UapiErrno.Invalid)]
    [InlineData("listen_port=65536\n", UapiErrno.Invalid)]
    [InlineData("listen_port=-1\n", UapiErrno.Invalid)]
    [InlineData("listen_port=+1\n", UapiErrno.Invalid)]
    [InlineData("fwmark=4294967296\n", UapiErrno.Invalid)]
    [InlineData("fwmark=0x10\n", UapiErrno.Invalid)]
    [InlineData("replace_peers=false\n", UapiErrno.Invalid)]
    [InlineData("private_key=abc\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "x\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\nendpoint=fd00::1:5\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\nendpoint=10.0.0.1\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\nallowed_ip=10.0.0.1\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\nallowed_ip=10.0.0.0/33\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\nprotocol_version=2\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\nremove=yes\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\npersistent_keepalive_interval=65536\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\ntx_bytes=5\n", UapiErrno.Invalid)]
    [InlineData("public_key=" + KeyA + "\nlisten_port=5\n", UapiErrno.Invalid)]
    public void Bad_lines_give_wireguard_go_errno_and_change_nothing(string body, int errno)
    {
        var (engine, _, _) = NewEngine();
        using var _e = engine;
        Assert.Equal($"errno={errno}\n\n", UapiProtocol.Handle(engine, "set=1\n" + body + "\n"));
        Assert.Equal(0, engine.PeerCount);
        Assert.Equal((ushort)0, engine.ListenPort);
    }

    [Fact]
    public void Unknown_operation_and_get_with_trailing_garbage()
    {
        var (engine, _, _) = NewEngine();
        using var _e = engine;
        Assert.Null(UapiProtocol.Handle(engine, "frob=1\n\n"));
        Assert.Equal("errno=-22\n\n", UapiProtocol.Handle(engine, "get=1\nx"));
        Assert.Equal("errno=0\n\n", UapiProtocol.Handle(engine, "get=1\n\n"));
    }

    [Fact]
    public void Get_reports_handshake_time_and_transfer_after_traffic()
    {
        using var p = new EnginePair();
        p.Handshake();
        p.Send(p.A, Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, 50));
        string text = UapiProtocol.Handle(p.A.Engine, "get=1\n\n")!;
        long sec = p.Clock.GetUtcNow().ToUnixTimeSeconds();
        Assert.Contains($"\nlast_handshake_time_sec={sec}\n", text);
        Assert.Contains($"\ntx_bytes={Messages.InitiationSize + Messages.KeepaliveSize + 112}\n", text);
        Assert.Contains($"\nrx_bytes={Messages.ResponseSize}\n", text);
        Assert.Contains("\nendpoint=192.0.2.2:51821\n", text);
        Assert.Contains($"\npreshared_key={Zero}\n", text);
        Assert.EndsWith("\nerrno=0\n\n", text);
    }

    [Fact]
    public void Later_replace_allowed_ips_drops_earlier_lines_like_wireguard_go()
    {
        Assert.Equal(UapiErrno.Ok, UapiProtocol.ParseSet($"public_key={KeyA}\nallowed_ip=10.0.0.0/8\nreplace_allowed_ips=true\nallowed_ip=10.1.0.0/16\n\n", out var req));
        using (req)
        {
            Assert.True(req!.Peers[0].ReplaceAllowedIps);
            Assert.Equal([IpPrefix.Parse("10.1.0.0/16")], req.Peers[0].AllowedIps);
        }
    }

    [FsCheck.Xunit.Property(MaxTest = 300)]
    public bool Random_text_never_throws(string? junk)
    {
        var (engine, _, _) = NewEngine();
        using var _e = engine;
        string? reply = UapiProtocol.Handle(engine, "set=1\n" + (junk ?? "") + "\n\n");
        return reply is not null && reply.StartsWith("errno=", StringComparison.Ordinal) && reply.EndsWith("\n\n", StringComparison.Ordinal);
    }
}
