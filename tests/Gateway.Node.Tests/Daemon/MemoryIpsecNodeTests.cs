using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Node.Overlay;
using Gateway.Policy;
using Gateway.Tunnel.Esp;

namespace Gateway.Node.Tests.Daemon;

/// <summary>
/// Two whole nodes in IPsec mode ([Overlay] Encryption = ipsec) over the in-memory network: the
/// daemon's send and receive paths with ESP on memory binds at the underlay addresses (port 0), as
/// the raw ESP socket presents it. No root needed.
/// </summary>
public sealed class MemoryIpsecNodeTests
{
    private const string Keys = "3+ rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128\n";
    private const string RotatedKeys = Keys + "4+ rfc4106(gcm(aes)) 0xa1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4 128\n";

    /// <summary>Records every underlay datagram's bytes (after the nodes' own tap).</summary>
    private static List<(IpEndpoint From, IpEndpoint To, byte[] Bytes)> Record(MemoryNodes nodes)
    {
        var seen = new List<(IpEndpoint, IpEndpoint, byte[])>();
        var inner = nodes.Network.Tap!;
        nodes.Network.Tap = (from, to, datagram) =>
        {
            lock (seen) seen.Add((from, to, datagram.ToArray()));
            return inner(from, to, datagram);
        };
        return seen;
    }

    private static long Metric(string text, string name, string label)
    {
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith(name + "{", StringComparison.Ordinal) && line.Contains(label, StringComparison.Ordinal))
            {
                return (long)double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        throw new Xunit.Sdk.XunitException($"no {name} with {label} in:\n{text}");
    }

    private static void WaitFor(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            Thread.Sleep(2); // the nodes' threads
        }
    }

    [Fact]
    public async Task Workload_traffic_crosses_in_ESP_both_ways_with_policy_and_the_VNI_encrypted()
    {
        await using var nodes = new MemoryNodes(ipsecKeys: Keys);
        var seen = Record(nodes);
        var syn = MemoryNodes.Tcp4("10.11.1.10", "10.11.2.10", 40000, 80, 1, 0, flags: 0x02);
        nodes.TunA.InjectPacket(syn);
        Assert.Equal(syn, MemoryNodes.Take(nodes.TunB));
        var synAck = MemoryNodes.Tcp4("10.11.2.10", "10.11.1.10", 80, 40000, 7, 0, flags: 0x12);
        nodes.TunB.InjectPacket(synAck);
        Assert.Equal(synAck, MemoryNodes.Take(nodes.TunA));

        lock (seen)
        {
            Assert.Equal(2, seen.Count);
            foreach (var (from, to, bytes) in seen)
            {
                Assert.Equal(0, from.Port);
                Assert.Equal(0, to.Port);
                Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(bytes)); // SPI = key id
                // ESP header and IV 16 + (40 + 50 VXLAN, no padding needed) + pad length, next header + ICV 16.
                Assert.Equal(16 + 90 + 2 + 16, bytes.Length);
                // Nothing of the inner packet is in clear: not the workload addresses, not the VXLAN port.
                Assert.True(bytes.AsSpan().IndexOf(new byte[] { 10, 11, 1, 10 }) < 0);
            }
            Assert.Equal(MemoryNodes.UnderlayA.Address, seen[0].From.Address);
            Assert.Equal(MemoryNodes.UnderlayB.Address, seen[0].To.Address);
        }
        Assert.Equal(1, nodes.A.Overlay!.Pipeline.Forwards(Direction.Egress));
        Assert.Equal(1, nodes.B.Overlay!.Pipeline.Forwards(Direction.Ingress));

        // Policy is unchanged: frontend -> db is denied at A, intruder -> backend at B.
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.10", "10.11.2.20", 40002, 5432, 1, 0, flags: 0x02));
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.20", "10.11.2.10", 40001, 80, 1, 0, flags: 0x02));
        WaitFor(() => nodes.B.Overlay.Pipeline.Drops(Direction.Ingress, OverlayDrop.PolicyDenied) == 1, "B's ingress policy drop");
        Assert.Equal(1, nodes.A.Overlay.Pipeline.Drops(Direction.Egress, OverlayDrop.PolicyDenied));

        string metrics = nodes.A.RenderMetrics();
        Assert.Equal(1, Metric(metrics, "gateway_ipsec_keys", "interface="));
        Assert.Equal(3, Metric(metrics, "gateway_ipsec_key_id", "interface="));
        Assert.Equal(2, Metric(metrics, "gateway_ipsec_packets_total", "direction=\"tx\""));
        Assert.Equal(1, Metric(metrics, "gateway_ipsec_packets_total", "direction=\"rx\""));
        Assert.Equal(0, Metric(metrics, "gateway_ipsec_errors_total", "type=\"auth_failure\""));
        // Every IPsec row of docs/metrics.md is served.
        string table = File.ReadAllText(Path.Combine(Replay.ReplayFixtureTests.FixtureDirectory, "..", "..", "docs", "metrics.md"));
        var rows = System.Text.RegularExpressions.Regex.Matches(table, @"^\| `(gateway_[a-z_]+)` \|[^\n]*\| ipsec \|", System.Text.RegularExpressions.RegexOptions.Multiline);
        Assert.Equal(6, rows.Count);
        Assert.All(rows, m => Assert.Contains(m.Groups[1].Value + "{", metrics));
        // The boot id peers need (file mode: their [Peer] IPsecBootId) is readable from the metrics.
        Assert.Contains($"boot_id=\"{MemoryNodes.BootIdA}\"", metrics);
    }

    [Fact]
    public async Task Node_traffic_between_tunnel_addresses_goes_into_ESP_as_it_is()
    {
        await using var nodes = new MemoryNodes(ipsecKeys: Keys);
        var seen = Record(nodes);
        var ping = MemoryNodes.Udp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 1, 2, 64);
        // 10.0.0.x are the interface addresses, not a peer's tunnel address or pods: no node to send to.
        nodes.TunA.InjectPacket(ping);
        var toTunnel = MemoryNodes.Udp4("198.51.100.1", "198.51.100.2", 1, 2, 64);
        nodes.TunA.InjectPacket(toTunnel);
        Assert.Equal(toTunnel, MemoryNodes.Take(nodes.TunB));
        Assert.Equal(1, nodes.A.Overlay!.Pipeline.Drops(Direction.Egress, OverlayDrop.NoTunnelEndpoint));
        lock (seen)
        {
            // 92 bytes, no VXLAN: 16 + 92 + 2 (aligned) + 2 + 16.
            Assert.Contains(seen, d => d.Bytes.Length == 16 + 92 + 2 + 2 + 16);
        }
    }

    [Fact]
    public async Task Replayed_forged_unknown_and_short_ESP_is_dropped_and_counted_never_a_crash()
    {
        await using var nodes = new MemoryNodes(ipsecKeys: Keys);
        var seen = Record(nodes);
        var syn = MemoryNodes.Tcp4("10.11.1.10", "10.11.2.10", 40000, 80, 1, 0, flags: 0x02);
        nodes.TunA.InjectPacket(syn);
        Assert.Equal(syn, MemoryNodes.Take(nodes.TunB));
        byte[] captured;
        lock (seen) captured = seen[0].Bytes;

        // An attacker on A's address (another port: ESP ignores it) sends to B.
        using var attacker = nodes.Network.Bind(new IpEndpoint(MemoryNodes.UnderlayA.Address, 7));
        var b = new IpEndpoint(MemoryNodes.UnderlayB.Address, 0);
        attacker.Send(captured, b); // replay
        var forged = (byte[])captured.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(forged.AsSpan(4), 1000); // a fresh sequence number the ICV does not cover
        attacker.Send(forged, b);
        var flipped = (byte[])captured.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(flipped.AsSpan(4), 1001);
        flipped[40] ^= 1;
        attacker.Send(flipped, b);
        var unknown = (byte[])captured.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(unknown, 9); // no key id 9
        attacker.Send(unknown, b);
        attacker.Send(captured.AsSpan(0, 5), b); // short
        using var stranger = nodes.Network.Bind(new IpEndpoint(IpAddress.Parse("192.0.2.99"), 0));
        stranger.Send(captured, b); // a node B has no SA with
        var random = new Random(16);
        for (int i = 0; i < 300; i++)
        {
            var junk = new byte[random.Next(0, 200)];
            random.NextBytes(junk);
            if (junk.Length >= 4 && i % 2 == 0)
            {
                BinaryPrimitives.WriteUInt32BigEndian(junk, 3); // the SPI in use: reaches the SA
            }
            attacker.Send(junk, b);
        }

        WaitFor(() => nodes.B.Ipsec!.Tunnel.GetReceiveCount(EspStatus.UnknownSpi) >= 2 &&
                      nodes.B.Overlay!.Pipeline.Drops(Direction.Ingress, OverlayDrop.Tunnel) >= 306, "the drops at B");
        string metrics = nodes.B.RenderMetrics();
        Assert.True(Metric(metrics, "gateway_ipsec_errors_total", "type=\"replay\"") >= 1);
        Assert.True(Metric(metrics, "gateway_ipsec_errors_total", "type=\"auth_failure\"") >= 2);
        Assert.True(Metric(metrics, "gateway_ipsec_errors_total", "type=\"no_state\"") >= 2);
        Assert.True(Metric(metrics, "gateway_ipsec_errors_total", "type=\"short\"") >= 1);
        Assert.Equal(1, Metric(metrics, "gateway_ipsec_packets_total", "direction=\"rx\""));
        Assert.Equal(0, nodes.TunB.Drain(static (_, _) => { }));

        // The node still works, and its window was not moved by the forged packets.
        var next = MemoryNodes.Tcp4("10.11.1.10", "10.11.2.10", 40000, 80, 2, 10);
        nodes.TunA.InjectPacket(next);
        Assert.Equal(next, MemoryNodes.Take(nodes.TunB));
        Assert.Equal(2UL, nodes.B.Ipsec!.Tunnel.InboundFor(MemoryNodes.UnderlayA.Address, 3)!.HighestReceived);
    }

    [Fact]
    public async Task A_key_rotation_under_traffic_loses_nothing_and_retires_the_old_key()
    {
        await using var nodes = new MemoryNodes(ipsecKeys: Keys);
        var seen = Record(nodes);
        int sent = 0;
        for (int i = 0; i < 5; i++) ExchangeTcp(nodes, ref sent);
        // A picks up the new key first (its poller), B a minute later; traffic never stops.
        File.WriteAllText(nodes.IpsecKeyFile, RotatedKeys);
        nodes.A.Ipsec!.Poll();
        Assert.Equal(2, nodes.A.Ipsec.Tunnel.KeyCount);
        for (int i = 0; i < 5; i++) ExchangeTcp(nodes, ref sent);
        nodes.Clock.Advance(TimeSpan.FromSeconds(60));
        nodes.A.Ipsec.Poll();
        for (int i = 0; i < 5; i++) ExchangeTcp(nodes, ref sent);
        nodes.B.Ipsec!.Poll();
        for (int i = 0; i < 5; i++) ExchangeTcp(nodes, ref sent);
        // After the overlap both nodes send with key 4 and drop key 3.
        nodes.Clock.Advance(TimeSpan.FromMinutes(5));
        nodes.A.Ipsec.Poll();
        nodes.B.Ipsec.Poll();
        for (int i = 0; i < 5; i++) ExchangeTcp(nodes, ref sent);
        Assert.Equal(1, nodes.A.Ipsec.Tunnel.KeyCount);
        Assert.Equal(4, nodes.A.Ipsec.Tunnel.CurrentSpi);
        Assert.Equal(4, nodes.B.Ipsec.Tunnel.CurrentSpi);
        lock (seen)
        {
            Assert.Equal(2 * sent, seen.Count);
            Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(seen[^1].Bytes));
            Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(seen[0].Bytes));
        }
        foreach (var node in new[] { nodes.A, nodes.B })
        {
            for (var status = EspStatus.Ok + 1; status < EspStatus.Count; status++)
            {
                Assert.Equal(0, node.Ipsec!.Tunnel.GetReceiveCount(status) + node.Ipsec.Tunnel.GetSendCount(status));
            }
        }
    }

    private static void ExchangeTcp(MemoryNodes nodes, ref int sent)
    {
        var there = MemoryNodes.Tcp4("10.11.1.10", "10.11.2.10", 40000, 80, (uint)(100 * sent + 1), 50);
        nodes.TunA.InjectPacket(there);
        Assert.Equal(there, MemoryNodes.Take(nodes.TunB));
        var back = MemoryNodes.Tcp4("10.11.2.10", "10.11.1.10", 80, 40000, (uint)(100 * sent + 7), 50);
        nodes.TunB.InjectPacket(back);
        Assert.Equal(back, MemoryNodes.Take(nodes.TunA));
        sent++;
    }

    [Fact]
    public async Task A_bad_keys_file_keeps_the_keys_in_use()
    {
        await using var nodes = new MemoryNodes(ipsecKeys: Keys);
        // Key id 3 again with another key: refused, as Cilium refuses it.
        File.WriteAllText(nodes.IpsecKeyFile, "3+ rfc4106(gcm(aes)) 0xffffffffffffffffffffffffffffffffffffffff 128\n");
        nodes.A.Ipsec!.Poll();
        Assert.Equal(1, nodes.A.Ipsec.KeyLoadFailures);
        Assert.Equal(3, nodes.A.Ipsec.Tunnel.CurrentSpi);
        var syn = MemoryNodes.Tcp4("10.11.1.10", "10.11.2.10", 40000, 80, 1, 0, flags: 0x02);
        nodes.TunA.InjectPacket(syn);
        Assert.Equal(syn, MemoryNodes.Take(nodes.TunB));
        Assert.Equal(1, Metric(nodes.A.RenderMetrics(), "gateway_ipsec_key_load_failures_total", "interface="));
    }

    [Fact]
    public async Task The_ESP_data_path_allocates_nothing_per_packet()
    {
        await using var nodes = new MemoryNodes(ipsecKeys: Keys, workers: 0);
        nodes.Network.Tap = null; // the test's underlay log grows a list: not the data path's allocation
        var packet = MemoryNodes.Tcp4("10.11.1.10", "10.11.2.10", 40000, 80, 1, 1000);
        void Burst(int count)
        {
            for (int i = 0; i < count; i += 32)
            {
                for (int k = 0; k < 32; k++) nodes.TunA.Inject(packet);
                int arrived = 0;
                WaitFor(() => (arrived += nodes.TunB.Drain(static (_, _) => { })) >= 32, "a burst through ESP");
            }
        }
        Burst(500);
        long before = nodes.A.DataPathAllocatedBytes + nodes.B.DataPathAllocatedBytes;
        const int packets = 2000;
        Burst(packets);
        long allocated = nodes.A.DataPathAllocatedBytes + nodes.B.DataPathAllocatedBytes - before;
        Assert.True(allocated < packets / 10, $"the ESP data path allocated {allocated} bytes for {packets} packets");
    }
}
