using FsCheck.Xunit;
using Gateway.Datapath;

namespace Gateway.Tunnel.Tests;

public class AllowedIpsTests
{
    private sealed class NullOutput : ITunnelOutput
    {
        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram) { }
    }

    private static PublicKey KeyFor(int i)
    {
        var k = new byte[32];
        k[0] = (byte)(i + 1);
        k[31] = 0x40;
        return new PublicKey(k);
    }

    private static IpAddress RandomAddress(Random rng, bool v6, IpAddress? near)
    {
        // Half the addresses are drawn near existing prefixes so that lookups actually hit.
        if (v6)
        {
            var bytes = new byte[16];
            rng.NextBytes(bytes);
            if (near is { IsV6: true } n && rng.Next(2) == 0) { n.WriteBytes(bytes.AsSpan(0, 16)); bytes[15] ^= (byte)rng.Next(256); bytes[rng.Next(16)] ^= (byte)(1 << rng.Next(8)); }
            return IpAddress.FromBytes(bytes);
        }
        var b4 = new byte[4];
        rng.NextBytes(b4);
        if (near is { IsV4: true } m && rng.Next(2) == 0) { m.WriteBytes(b4); b4[rng.Next(4)] ^= (byte)(1 << rng.Next(8)); }
        b4[0] = (byte)(b4[0] & 0x0f); // a dense corner of the space: more overlaps
        return IpAddress.FromBytes(b4);
    }

    [Property(MaxTest = 150)]
    public void Routing_agrees_with_a_linear_scan(int seed)
    {
        var rng = new Random(seed);
        using var engine = new WireGuardEngine(new NullOutput());
        var peers = Enumerable.Range(0, 6).Select(i => engine.GetOrAddPeer(KeyFor(i))).ToArray();
        var reference = new List<(IpPrefix Prefix, Peer Peer)>();
        int count = rng.Next(0, 60);
        IpAddress? last = null;
        for (int i = 0; i < count; i++)
        {
            bool v6 = rng.Next(3) == 0;
            var addr = RandomAddress(rng, v6, last);
            last = addr;
            var prefix = new IpPrefix(addr, rng.Next(0, v6 ? 129 : 33));
            var peer = peers[rng.Next(peers.Length)];
            engine.AddAllowedIp(peer, prefix);
            reference.RemoveAll(e => e.Prefix.Equals(prefix));
            reference.Add((prefix, peer));
            if (rng.Next(10) == 0)
            {
                var victim = peers[rng.Next(peers.Length)];
                engine.ClearAllowedIps(victim);
                reference.RemoveAll(e => e.Peer == victim);
            }
        }
        for (int q = 0; q < 200; q++)
        {
            var probe = RandomAddress(rng, rng.Next(3) == 0, reference.Count > 0 ? reference[rng.Next(reference.Count)].Prefix.Address : null);
            var best = reference.Where(e => e.Prefix.Contains(probe)).OrderByDescending(e => e.Prefix.Length).Select(e => e.Peer).FirstOrDefault();
            bool found = engine.TryRoute(probe, out var got);
            Assert.Equal(best is not null, found);
            if (found) Assert.Same(best, got);
        }
        // Each peer lists exactly its own prefixes.
        foreach (var peer in peers)
            Assert.Equal(reference.Where(e => e.Peer == peer).Select(e => e.Prefix).OrderBy(x => x.ToString()),
                peer.AllowedIps.OrderBy(x => x.ToString()));
    }

    [Fact]
    public void Removing_a_peer_removes_its_routes()
    {
        using var engine = new WireGuardEngine(new NullOutput());
        var a = engine.GetOrAddPeer(KeyFor(1));
        var b = engine.GetOrAddPeer(KeyFor(2));
        engine.AddAllowedIp(a, IpPrefix.Parse("10.0.0.0/8"));
        engine.AddAllowedIp(b, IpPrefix.Parse("10.1.0.0/16"));
        Assert.True(engine.TryRoute(IpAddress.Parse("10.1.2.3"), out var p1) && p1 == b);
        Assert.True(engine.RemovePeer(KeyFor(2)));
        Assert.True(engine.TryRoute(IpAddress.Parse("10.1.2.3"), out var p2) && p2 == a);
        // A prefix moved to another peer leaves the old peer's list.
        var c = engine.GetOrAddPeer(KeyFor(3));
        engine.AddAllowedIp(c, IpPrefix.Parse("10.0.0.0/8"));
        Assert.Empty(a.AllowedIps);
        Assert.Single(c.AllowedIps);
    }
}
