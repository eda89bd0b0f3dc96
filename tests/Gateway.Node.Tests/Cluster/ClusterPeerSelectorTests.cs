using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Node.Cluster;

namespace Gateway.Node.Tests.Cluster;

public class ClusterPeerSelectorTests
{
    private static string NewPublicKey()
    {
        using var key = WireGuardKey.GeneratePrivate();
        using var pub = key.DerivePublic();
        return pub.ToBase64();
    }

    private static readonly string SelfKey = NewPublicKey();

    private static ClusterPeerSelector Selector() => new("node-1", [IpPrefix.Parse("10.42.1.0/24")], IpAddress.Parse("10.242.0.1"), [IpPrefix.Parse("10.42.0.0/16")]);

    private static NodeClaim Node(int n, string? key = null, string? pods = null, string? tunnel = null, string? address = null, int port = 51871) =>
        new($"node-{n}", key ?? NewPublicKey(), address ?? $"192.168.242.{n}", port, tunnel ?? $"10.242.0.{n}", [pods ?? $"10.42.{n}.0/24"]);

    private static readonly ReservedClaims Reserved = new(new HashSet<string> { SelfKey }, [], []);

    [Fact]
    public void EveryOtherValidRecordBecomesAPeerAndSelfIsSkipped()
    {
        var (peers, refused) = Selector().Select([Node(1, SelfKey), Node(2), Node(3)], Reserved);
        Assert.Equal(["node-2", "node-3"], peers.Select(p => p.Name));
        Assert.Empty(refused);
        Assert.Equal("192.168.242.2:51871", peers[0].Endpoint.ToString());
        Assert.Equal(["10.42.2.0/24"], peers[0].PodCidrs.Select(p => p.ToString()));
    }

    [Theory]
    [InlineData("not-a-key", null, null, null, 51871, "public key is not a base64 key")]
    [InlineData(null, "10.42.1.128/25", null, null, 51871, "overlaps 10.42.1.0/24 of this node")]
    [InlineData(null, "10.0.0.0/8", null, null, 51871, "outside ClusterCIDR")]
    [InlineData(null, "10.99.0.0/24", null, null, 51871, "outside ClusterCIDR")]
    [InlineData(null, "10.42.9.0/33", null, null, 51871, "is not a prefix")]
    [InlineData(null, null, "10.242.0.1", null, 51871, "tunnel address 10.242.0.1 is already used")]
    [InlineData(null, null, "fd00::1", null, 51871, "not an IPv4 address")]
    [InlineData(null, null, null, "nowhere", 51871, "address 'nowhere' is not an IP address")]
    [InlineData(null, null, null, null, 0, "port 0 is not 1-65535")]
    public void BadRecordsAreRefusedWithAReason(string? key, string? pods, string? tunnel, string? address, int port, string reason)
    {
        var (peers, refused) = Selector().Select([Node(5, key, pods, tunnel, address, port)], Reserved);
        Assert.Empty(peers);
        var (node, why) = Assert.Single(refused);
        Assert.Equal("node-5", node);
        Assert.Contains(reason, why);
    }

    [Fact]
    public void IpsecModeTakesOnlyRecordsWithAUuidBootIdAndKeepsItLowerCase()
    {
        var ipsec = new ClusterPeerSelector("node-1", [IpPrefix.Parse("10.42.1.0/24")], IpAddress.Parse("10.242.0.1"), [IpPrefix.Parse("10.42.0.0/16")]) { RequireBootId = true };
        var (peers, refused) = ipsec.Select(
            [Node(2) with { BootId = "0B5E0000-0000-4000-8000-00000000ABCD" }, Node(3) with { BootId = "boot-3" }, Node(4)], Reserved);
        var peer = Assert.Single(peers);
        Assert.Equal("0b5e0000-0000-4000-8000-00000000abcd", peer.BootId);
        Assert.Equal(["node-3", "node-4"], refused.Select(r => r.Node).Order());
        Assert.All(refused, r => Assert.Contains("is not a UUID (IPsec mode derives the node-pair keys from it)", r.Reason));
        // WireGuard mode does not need it.
        Assert.Equal(3, Selector().Select([Node(2), Node(3) with { BootId = "boot-3" }, Node(4)], Reserved).Peers.Count);
    }

    [Fact]
    public void ARecordReusingThisNodesKeyIsRefused()
    {
        var (peers, refused) = Selector().Select([Node(5, SelfKey)], Reserved);
        Assert.Empty(peers);
        Assert.Contains("already used", Assert.Single(refused).Reason);
    }

    [Fact]
    public void AnAcceptedNodeKeepsItsPodCidrAgainstANewcomerWhateverTheNames()
    {
        var selector = Selector();
        var owner = Node(7);
        Assert.Single(selector.Select([owner], Reserved).Peers);
        // "node-0" sorts first, but node-7 was accepted before: the newcomer is the one refused.
        var thief = new NodeClaim("node-0", NewPublicKey(), "192.168.242.50", 51871, "10.242.0.50", ["10.42.7.0/24"]);
        var (peers, refused) = selector.Select([thief, owner], Reserved);
        Assert.Equal("node-7", Assert.Single(peers).Name);
        Assert.Equal("node-0", refused[0].Node);
        Assert.Contains("overlaps 10.42.7.0/24 of node-7", refused[0].Reason);
    }

    [Fact]
    public void ARecordCollidingWithAPeerOfTheFileIsRefused()
    {
        var file = new ReservedClaims(new HashSet<string> { SelfKey }, [IpAddress.Parse("10.242.0.9")], [IpPrefix.Parse("10.42.9.0/24")]);
        var (peers, refused) = Selector().Select([Node(9, tunnel: "10.242.0.99"), Node(8, tunnel: "10.242.0.9")], file);
        Assert.Empty(peers);
        Assert.Contains(refused, r => r.Node == "node-9" && r.Reason.Contains("of a [Peer] of the file", StringComparison.Ordinal));
        Assert.Contains(refused, r => r.Node == "node-8" && r.Reason.Contains("tunnel address 10.242.0.9 is already used", StringComparison.Ordinal));
    }

    [Fact]
    public void ANodeThatLeavesIsDropped()
    {
        var selector = Selector();
        Assert.Equal(2, selector.Select([Node(2), Node(3)], Reserved).Peers.Count);
        Assert.Equal("node-3", Assert.Single(selector.Select([Node(3)], Reserved).Peers).Name);
    }

    /// <summary>The ordered-range overlap check agrees with comparing every pair: random pod CIDRs
    /// of random lengths (nested, adjacent, disjoint; IPv4 and IPv6) are accepted or refused
    /// exactly as a linear scan over the CIDRs accepted before them says.</summary>
    [Fact]
    public void PodCidrOverlapsAgreeWithALinearScanOverRandomCidrs()
    {
        var random = new Random(12);
        for (int round = 0; round < 50; round++)
        {
            var claims = new PodCidrClaims();
            var reserved = IpPrefix.Parse("10.8.0.0/16");
            claims.Reserve(reserved, "this node");
            var accepted = new List<IpPrefix> { reserved };
            for (int i = 0; i < 200; i++)
            {
                IpPrefix prefix = random.Next(4) == 0
                    ? new IpPrefix(IpAddress.FromV6(new UInt128(0xfd00_0000_0000_0000UL | (ulong)random.Next(64) << 40, 0)), random.Next(20, 30))
                    : new IpPrefix(IpAddress.FromV4(0x0A00_0000u | (uint)random.Next(1 << 12) << 12), random.Next(12, 25));
                bool overlaps = accepted.Any(a => a.Contains(prefix.Address) || prefix.Contains(a.Address));
                var found = claims.FindOverlap(prefix);
                Assert.Equal(overlaps, found is not null);
                if (found is { } hit)
                {
                    Assert.True(hit.Prefix.Contains(prefix.Address) || prefix.Contains(hit.Prefix.Address), $"{hit.Prefix} reported for {prefix}");
                }
                else
                {
                    claims.Claim(prefix, $"node-{i}");
                    accepted.Add(prefix);
                }
            }
        }
    }
}
