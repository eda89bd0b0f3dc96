using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.Node.Tests.Daemon;

/// <summary>
/// Two overlay daemons on memory devices with `Services =` in [Overlay]: frontend-0 on node A
/// connects to a ClusterIP whose backends are on node B; the backend sees the client, the client
/// sees only the VIP; a reload that removes the chosen backend ends the flow's translation.
/// </summary>
public class MemoryNodeServiceTests
{
    private const string Services = """
        apiVersion: v1
        kind: Service
        metadata: {name: backend}
        spec: {clusterIP: 10.96.0.20, selector: {app: backend}, ports: [{port: 80}]}
        """;

    private static byte[] Tcp4(string src, ushort sport, string dst, ushort dport, byte flags)
    {
        var p = new byte[40];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), 40);
        p[8] = 64;
        p[9] = IpProtocol.Tcp;
        IpAddress.Parse(src).WriteBytes(p.AsSpan(12));
        IpAddress.Parse(dst).WriteBytes(p.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), InternetChecksum.Compute(p.AsSpan(0, 20)));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(20), sport);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), dport);
        p[32] = 0x50;
        p[33] = flags;
        Assert.True(TransportChecksum.TryFill(p));
        return p;
    }

    [Fact]
    public async Task DaemonTranslatesTheClusterIpBeforePolicyAndBack()
    {
        await using var nodes = new MemoryNodes(overlay: true, services: Services);
        nodes.Handshake();
        nodes.TunA.InjectPacket(Tcp4("10.11.1.10", 40000, "10.96.0.20", 80, TcpFlag.Syn));
        var atB = MemoryNodes.Take(nodes.TunB);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(atB, out var k));
        Assert.Contains(k.Destination.ToString(), new[] { "10.11.2.10", "10.11.2.11" });
        Assert.Equal(IpAddress.Parse("10.11.1.10"), k.Source);
        Assert.True(TransportChecksum.Verify(atB));

        nodes.TunB.InjectPacket(Tcp4(k.Destination.ToString(), 80, "10.11.1.10", 40000, TcpFlag.Syn | TcpFlag.Ack));
        var atA = MemoryNodes.Take(nodes.TunA);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(atA, out var r));
        Assert.Equal(IpAddress.Parse("10.96.0.20"), r.Source);
        Assert.Equal(80, r.SourcePort);
        Assert.True(TransportChecksum.Verify(atA));

        // Reload with the chosen backend relabelled away: its translated flows are ended.
        var ct = nodes.A.Overlay!.Policy.Conntrack;
        var original = new FlowKey { Source = IpAddress.Parse("10.11.1.10"), SourcePort = 40000, Destination = IpAddress.Parse("10.96.0.20"), DestinationPort = 80, Protocol = IpProtocol.Tcp };
        Assert.Equal(CtResult.Established, ct.LookupService(original, 0, out _));
        string endpoints = Path.Combine(nodes.Folder, "endpoints.yaml");
        string chosen = k.Destination.ToString();
        File.WriteAllText(endpoints, string.Join('\n', File.ReadAllLines(endpoints).Select(l => l.Contains(chosen, StringComparison.Ordinal) ? l.Replace("app: backend", "app: retired") : l)));
        Assert.True(nodes.A.Overlay.ReloadPolicy());
        Assert.Equal(CtResult.New, ct.LookupService(original, 0, out _));
    }
}
