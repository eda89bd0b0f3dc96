using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Policy.Tests;

public class IcmpErrorQuoteTests
{
    /// <summary>An ICMPv4 "port unreachable" quoting a UDP datagram 10.0.0.1:5000 -> 203.0.113.5:53.</summary>
    private static byte[] PortUnreachableV4()
    {
        var m = new byte[8 + 20 + 8];
        m[0] = 3; m[1] = 3;
        var ip = m.AsSpan(8);
        ip[0] = 0x45; ip[8] = 64; ip[9] = IpProtocol.Udp;
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], 0x0A000001);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], 0xCB007105);
        BinaryPrimitives.WriteUInt16BigEndian(ip[20..], 5000);
        BinaryPrimitives.WriteUInt16BigEndian(ip[22..], 53);
        return m;
    }

    [Fact]
    public void ParsesTheQuotedUdpFlow()
    {
        Assert.True(IcmpErrorQuote.TryParse(PortUnreachableV4(), IpProtocol.Icmp, out var q));
        Assert.Equal(IpAddress.Parse("10.0.0.1"), q.Source);
        Assert.Equal(IpAddress.Parse("203.0.113.5"), q.Destination);
        Assert.Equal(IpProtocol.Udp, q.Protocol);
        Assert.Equal(5000, q.SourcePort);
        Assert.Equal(53, q.DestinationPort);
    }

    [Fact]
    public void ParsesAnIcmpv6PacketTooBigQuotingTcpAfterAnExtensionHeader()
    {
        var m = new byte[8 + 40 + 8 + 20];
        m[0] = 2;
        var ip = m.AsSpan(8);
        ip[0] = 0x60; ip[6] = IpProtocol.DestinationOptions;
        BinaryPrimitives.WriteUInt128BigEndian(ip[8..], IpAddress.Parse("fd00::1").V6);
        BinaryPrimitives.WriteUInt128BigEndian(ip[24..], IpAddress.Parse("fd00::2").V6);
        ip[40] = IpProtocol.Tcp; ip[41] = 0; // 8-byte destination options header
        BinaryPrimitives.WriteUInt16BigEndian(ip[48..], 40000);
        BinaryPrimitives.WriteUInt16BigEndian(ip[50..], 443);
        Assert.True(IcmpErrorQuote.TryParse(m, IpProtocol.Icmpv6, out var q));
        Assert.Equal(IpAddress.Parse("fd00::2"), q.Destination);
        Assert.Equal(IpProtocol.Tcp, q.Protocol);
        Assert.Equal(40000, q.SourcePort);
        Assert.Equal(443, q.DestinationPort);
    }

    [Fact]
    public void EchoRequestsAndTruncatedQuotesAreNotErrors()
    {
        var echo = new byte[16];
        echo[0] = 8;
        Assert.False(IcmpErrorQuote.TryParse(echo, IpProtocol.Icmp, out _));
        var m = PortUnreachableV4();
        for (int len = 0; len < m.Length - 4; len++)
        {
            Assert.False(IcmpErrorQuote.TryParse(m.AsSpan(0, len), IpProtocol.Icmp, out _));
        }
    }

    [Fact]
    public void RandomBytesNeverThrowOrOverrun()
    {
        var rng = new Random(5);
        for (int i = 0; i < 20000; i++)
        {
            var buf = new byte[rng.Next(0, 120)];
            rng.NextBytes(buf);
            if (buf.Length > 0)
            {
                buf[0] = (byte)rng.Next(0, 13);
            }
            if (buf.Length > 8)
            {
                buf[8] = (byte)((rng.Next(2) == 0 ? 0x40 : 0x60) | (buf[8] & 0x0F));
            }
            IcmpErrorQuote.TryParse(buf, rng.Next(2) == 0 ? IpProtocol.Icmp : IpProtocol.Icmpv6, out _);
        }
    }

    [Fact]
    public void EngineLetsRelatedErrorsThroughAndJudgesUnrelatedOnes()
    {
        var identities = new IdentityAllocator();
        var engine = new PolicyEngine(identities, new Conntrack(1024), new FlowEventRing(16));
        engine.Apply(new PolicySet(PolicyLoader.Parse("""
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: p}
            spec:
              endpointSelector: {matchLabels: {app: a}}
              ingress: [{}]
              egress: [{toCIDR: [203.0.113.0/24]}]
            """, "p.yaml"), ["p.yaml"]), EndpointFile.Parse(Helpers.Endpoints, "e.yaml", identities));
        var udp = new FlowKey { Source = IpAddress.Parse("10.0.0.1"), Destination = IpAddress.Parse("203.0.113.5"), Protocol = IpProtocol.Udp, SourcePort = 5000, DestinationPort = 53 };
        Assert.True(engine.Process(udp, 0).Allowed);

        var error = new FlowKey { Source = IpAddress.Parse("203.0.113.5"), Destination = IpAddress.Parse("10.0.0.1"), Protocol = IpProtocol.Icmp, IcmpType = 3, IcmpCode = 3 };
        Assert.True(IcmpErrorQuote.TryParse(PortUnreachableV4(), IpProtocol.Icmp, out var quoted));
        var related = engine.ProcessIcmpError(error, quoted, 1);
        Assert.True(related.Allowed);
        Assert.Equal(CtResult.Related, related.Conntrack);

        // The same error about a flow that never existed meets a:'s ingress `- {}`: default deny.
        quoted.SourcePort = 5001;
        var unrelated = engine.ProcessIcmpError(error, quoted, 1);
        Assert.False(unrelated.Allowed);
        Assert.Equal(DropReason.PolicyDenied, unrelated.DropReason);
    }
}
