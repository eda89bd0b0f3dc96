using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.LoadBalancer.Tests;

/// <summary>Readiness, and the packets that end a client's flow when its backend goes away.</summary>
public class BackendChangeTests
{
    [Fact]
    public void NotReadyEndpointsAreNoBackends()
    {
        string endpoints = Fixtures.Endpoints.Replace(
            "{name: web-2, namespace: default, ips: [10.0.1.2, \"fd00::1:2\"], labels: {app: web, tier: fe}, ports: [{name: http, port: 8081}]}",
            "{name: web-2, namespace: default, ips: [10.0.1.2, \"fd00::1:2\"], labels: {app: web, tier: fe}, ports: [{name: http, port: 8081}], ready: false}",
            StringComparison.Ordinal);
        Assert.NotEqual(Fixtures.Endpoints, endpoints);
        var table = Fixtures.Compile(endpoints: endpoints);
        ref readonly var fe = ref table.TryFindFrontend(IpAddress.Parse("10.96.0.10"), 81, IpProtocol.Tcp, out bool found);
        Assert.True(found);
        var names = new List<string>();
        for (int i = 0; i < fe.BackendCount; i++)
        {
            names.Add(table.BackendOf(in fe, i).EndpointName);
        }
        Assert.Equal(["default/web-1", "default/web-3"], names);
        // The endpoint itself stays (identity, policy): only its backend role goes.
        Assert.False(Fixtures.LoadEndpoints(endpoints).FindByName("web-2")!.Ready);
        Assert.True(Fixtures.LoadEndpoints().FindByName("web-2")!.Ready);
    }

    [Fact]
    public void ReadyMustBeABoolean()
    {
        var e = Assert.Throws<PolicyLoadException>(() => Fixtures.LoadEndpoints("endpoints:\n  - {name: a, ips: [10.0.0.1], ready: maybe}\n"));
        Assert.Contains("not true or false", e.Message, StringComparison.Ordinal);
    }

    private static CtNat Flow(string client, string vip, string backend, byte protocol) =>
        new(IpAddress.Parse(client), 40000, IpAddress.Parse(vip), 80, IpAddress.Parse(backend), 8080, protocol);

    [Theory]
    [InlineData("10.0.0.5", "10.96.0.10", "10.0.1.1")]
    [InlineData("fd00::5", "fd00:96::10", "fd00::1:1")]
    public void TcpFlowsEndWithARstFromTheVipCarryingTheClientsAck(string client, string vip, string backend)
    {
        var buffer = new byte[ServiceTeardown.MaxLength];
        var flow = Flow(client, vip, backend, IpProtocol.Tcp);
        // No acknowledgment seen (the client only sent a SYN): nothing to send, its retry finds a live backend.
        Assert.Equal(0, ServiceTeardown.Write(flow, null, buffer));
        int n = ServiceTeardown.Write(flow, 0xDEADBEEF, buffer);
        var packet = buffer.AsSpan(0, n);
        Assert.True(TransportChecksum.Verify(packet));
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(packet, out var key, out var layout));
        Assert.Equal(IpAddress.Parse(vip), key.Source);
        Assert.Equal(80, key.SourcePort);
        Assert.Equal(IpAddress.Parse(client), key.Destination);
        Assert.Equal(40000, key.DestinationPort);
        Assert.Equal(TcpFlag.Rst, key.TcpFlags);
        Assert.Equal(0xDEADBEEFu, BinaryPrimitives.ReadUInt32BigEndian(packet[(layout.TransportOffset + 4)..]));
        Assert.Equal(n, layout.NetworkEnd);
        // PacketDotNet agrees on the whole packet.
        var parsed = PacketDotNet.Packet.ParsePacket(PacketDotNet.LinkLayers.Raw, packet.ToArray());
        var tcp = parsed.Extract<PacketDotNet.TcpPacket>();
        Assert.True(tcp.Reset);
        Assert.Equal(0xDEADBEEFu, tcp.SequenceNumber);
        Assert.True(tcp.ValidTcpChecksum);
    }

    [Theory]
    [InlineData("10.0.0.5", "10.96.0.10", "10.0.1.1", 3, 3)]
    [InlineData("fd00::5", "fd00:96::10", "fd00::1:1", 1, 4)]
    public void UdpFlowsEndWithAPortUnreachableFromTheVipQuotingTheClientsDatagram(string client, string vip, string backend, int type, int code)
    {
        var buffer = new byte[ServiceTeardown.MaxLength];
        int n = ServiceTeardown.Write(Flow(client, vip, backend, IpProtocol.Udp), null, buffer);
        var packet = buffer.AsSpan(0, n);
        Assert.True(TransportChecksum.Verify(packet));
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(packet, out var key, out var layout));
        Assert.Equal(IpAddress.Parse(vip), key.Source);
        Assert.Equal(IpAddress.Parse(client), key.Destination);
        Assert.Equal(type, key.IcmpType);
        Assert.Equal(code, key.IcmpCode);
        // The quote is the client's datagram to the VIP (never the backend), which conntrack and the
        // client's kernel match to the flow.
        Assert.True(IcmpErrorQuote.TryParse(packet[layout.TransportOffset..], key.Protocol, out var quoted));
        Assert.Equal(IpAddress.Parse(client), quoted.Source);
        Assert.Equal(40000, quoted.SourcePort);
        Assert.Equal(IpAddress.Parse(vip), quoted.Destination);
        Assert.Equal(80, quoted.DestinationPort);
        Assert.Equal(IpProtocol.Udp, quoted.Protocol);
    }

    [Fact]
    public void ConntrackKeepsTheClientsLastAckAndReportsItForEndedFlows()
    {
        var ct = new Conntrack(1024);
        var original = Fixtures.Flow("10.0.0.5", 40000, "10.96.0.10", 80);
        original.TcpFlags = TcpFlag.Syn;
        ct.CreateService(original, 0, IpAddress.Parse("10.0.1.1"), 8080, tcpAck: 0);
        var translated = original;
        translated.Destination = IpAddress.Parse("10.0.1.1");
        translated.DestinationPort = 8080;
        ct.Create(translated, 0);
        ct.Create(translated, 0, original.Destination, 80);
        original.TcpFlags = TcpFlag.Ack;
        Assert.Equal(CtResult.Established, ct.LookupService(original, 1, out _, 1000));
        Assert.Equal(CtResult.Established, ct.LookupService(original, 2, out _, 2500));
        // A flow that keeps its backend is untouched.
        var ended = new List<CtNat>();
        var acks = new Dictionary<CtNat, uint>();
        Assert.Equal(0, ct.EndTranslatedFlows(_ => false, ended, acks));
        Assert.Empty(ended);
        Assert.Equal(2, ct.EndTranslatedFlows(n => n.BackendAddress == IpAddress.Parse("10.0.1.1"), ended, acks));
        var nat = Assert.Single(ended);
        Assert.Equal(2500u, acks[nat]);
        Assert.Equal(CtResult.New, ct.LookupService(original, 3, out _));
    }

    [Fact]
    public void FlowEventsNameTheServiceAsHubbleDoes()
    {
        var ev = new FlowEvent { Verdict = FlowVerdict.Forwarded, Key = Fixtures.Flow("10.0.0.5", 40000, "10.0.1.1", 8080), RuleId = -1, DestinationService = "default/web" };
        using var doc = System.Text.Json.JsonDocument.Parse(FlowEventJson.Serialize(ev, null));
        var svc = doc.RootElement.GetProperty("destination_service");
        Assert.Equal("web", svc.GetProperty("name").GetString());
        Assert.Equal("default", svc.GetProperty("namespace").GetString());
        Assert.Equal("10.0.1.1", doc.RootElement.GetProperty("IP").GetProperty("destination").GetString());
        ev.DestinationService = null;
        using var plain = System.Text.Json.JsonDocument.Parse(FlowEventJson.Serialize(ev, null));
        Assert.False(plain.RootElement.TryGetProperty("destination_service", out _));
    }
}
