using Gateway.Datapath;

namespace Gateway.Policy.Tests;

/// <summary>Conntrack's service additions: backend per original tuple, reverse NAT on replies, ending flows of gone backends.</summary>
public class ConntrackNatTests
{
    private const long Second = 1_000_000_000;
    private static readonly IpAddress Client = IpAddress.Parse("10.0.0.5");
    private static readonly IpAddress Vip = IpAddress.Parse("10.96.0.10");
    private static readonly IpAddress Backend = IpAddress.Parse("10.0.1.1");

    private static FlowKey Tcp(IpAddress src, ushort sport, IpAddress dst, ushort dport, byte flags) => new()
    {
        Source = src, Destination = dst, Protocol = IpProtocol.Tcp, SourcePort = sport, DestinationPort = dport, TcpFlags = flags,
    };

    [Fact]
    public void TranslatedFlowRecordsTheVipSoRepliesAreReverseTranslated()
    {
        var ct = new Conntrack(1024);
        var original = Tcp(Client, 40000, Vip, 80, TcpFlag.Syn);
        Assert.Equal(CtResult.New, ct.LookupService(original, 0, out _));
        Assert.True(ct.CreateService(original, 0, Backend, 8080));
        var translated = Tcp(Client, 40000, Backend, 8080, TcpFlag.Syn);
        Assert.Equal(CtResult.New, ct.Lookup(translated, 0, out _));
        Assert.True(ct.Create(translated, 0, Vip, 80));

        // Later packets of the flow find their backend without a new selection.
        Assert.Equal(CtResult.Established, ct.LookupService(Tcp(Client, 40000, Vip, 80, TcpFlag.Ack), Second, out var svc));
        Assert.Equal(new CtNat(Client, 40000, Vip, 80, Backend, 8080, IpProtocol.Tcp), svc);
        Assert.Equal(Tcp(Client, 40000, Backend, 8080, 0), svc.Translated);
        Assert.Equal(Tcp(Client, 40000, Vip, 80, 0), svc.Original);

        // The backend's reply is a Reply carrying the VIP:port to write as its source.
        Assert.Equal(CtResult.Reply, ct.Lookup(Tcp(Backend, 8080, Client, 40000, TcpFlag.Syn | TcpFlag.Ack), Second, out var nat));
        Assert.True(nat.IsTranslated);
        Assert.Equal(Vip, nat.ServiceAddress);
        Assert.Equal(80, nat.ServicePort);
        Assert.Equal(Backend, nat.BackendAddress);
        Assert.Equal(Client, nat.ClientAddress);
        Assert.Equal(TcpState.Established, ct.Inspect(translated).State);

        // A plain flow carries no translation; the service entry is invisible to plain lookups.
        var plain = Tcp(Client, 40001, Backend, 8080, TcpFlag.Syn);
        ct.Create(plain, 0);
        Assert.Equal(CtResult.Established, ct.Lookup(plain, 0, out var none));
        Assert.False(none.IsTranslated);
        Assert.Equal(CtResult.New, ct.Lookup(Tcp(Client, 40000, Vip, 80, TcpFlag.Ack), Second, out _));
    }

    [Fact]
    public void ServiceEntriesExpireLikeTheirFlow()
    {
        var ct = new Conntrack(1024);
        var udp = new FlowKey { Source = Client, Destination = Vip, SourcePort = 5000, DestinationPort = 53, Protocol = IpProtocol.Udp };
        ct.CreateService(udp, 0, Backend, 5353);
        Assert.Equal(CtResult.Established, ct.LookupService(udp, 59 * Second, out _));
        Assert.Equal(CtResult.Established, ct.LookupService(udp, 118 * Second, out _));
        Assert.Equal(CtResult.New, ct.LookupService(udp, 179 * Second, out _));
    }

    [Fact]
    public void FlowsOfAGoneBackendAreEndedAndOthersSurvive()
    {
        var ct = new Conntrack(1024);
        var other = IpAddress.Parse("10.0.1.2");
        for (ushort p = 1; p <= 10; p++)
        {
            var backend = p % 2 == 0 ? Backend : other;
            var original = Tcp(Client, p, Vip, 80, TcpFlag.Syn);
            ct.CreateService(original, 0, backend, 8080);
            ct.Create(Tcp(Client, p, backend, 8080, TcpFlag.Syn), 0, Vip, 80);
        }
        ct.Create(Tcp(Client, 999, Backend, 8080, TcpFlag.Syn), 0);   // direct to the pod, not via the VIP
        var ended = new List<CtNat>();
        int removed = ct.EndTranslatedFlows(n => n.BackendAddress == Backend, ended);
        Assert.Equal(10, removed);   // 5 service entries + 5 flow entries
        Assert.Equal(5, ended.Count);
        Assert.All(ended, n => Assert.Equal(Backend, n.BackendAddress));
        Assert.Equal([2, 4, 6, 8, 10], ended.Select(n => (int)n.ClientPort).Order());
        for (ushort p = 1; p <= 10; p++)
        {
            var expected = p % 2 == 0 ? CtResult.New : CtResult.Established;
            Assert.Equal(expected, ct.LookupService(Tcp(Client, p, Vip, 80, TcpFlag.Ack), Second, out _));
        }
        Assert.Equal(CtResult.Established, ct.Lookup(Tcp(Client, 999, Backend, 8080, TcpFlag.Ack), Second));
    }

    [Fact]
    public void NatLookupsAllocateNothing()
    {
        var ct = new Conntrack(1024);
        var original = Tcp(Client, 40000, Vip, 80, TcpFlag.Ack);
        var translated = Tcp(Client, 40000, Backend, 8080, TcpFlag.Ack);
        var reply = Tcp(Backend, 8080, Client, 40000, TcpFlag.Ack);
        long sink = 0;
        for (int round = 0; round < 2; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 1000; i++)
            {
                ct.CreateService(original, i, Backend, 8080);
                ct.Create(translated, i, Vip, 80);
                sink += (int)ct.LookupService(original, i, out var a) + a.ServicePort;
                sink += (int)ct.Lookup(reply, i, out var b) + b.ServicePort;
            }
            if (round == 1)
            {
                Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
            }
        }
        Assert.NotEqual(0, sink);
    }
}
