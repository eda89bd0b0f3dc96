using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.LoadBalancer;
using Gateway.Node.Overlay;
using Gateway.Node.Replay;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Tests.Overlay;

/// <summary>
/// Backends on the client's own node (docs/services.md): node A's pipeline gets the packets its
/// pods send to each other (the daemon routes them through the tunnel device while it has
/// services), translates VIPs to local backends, judges both ends' policy with the real client's
/// identity, reverse-translates the local backends' replies, and hairpins a pod that reaches
/// itself through the service loopback address. IPv4 and IPv6.
/// </summary>
public sealed class OverlayLocalBackendTests : IDisposable
{
    private const string Endpoints = """
        endpoints:
          - {name: client, namespace: default, ips: [10.11.1.10, "fd11:1::10"], labels: {app: client}}
          - {name: local-1, namespace: default, ips: [10.11.1.21, "fd11:1::21"], labels: {app: web, node: a}}
          - {name: local-2, namespace: default, ips: [10.11.1.22, "fd11:1::22"], labels: {app: web, node: a}}
          - {name: remote-1, namespace: default, ips: [10.11.2.31, "fd11:2::31"], labels: {app: web, node: b}}
          - {name: remote-2, namespace: default, ips: [10.11.2.32, "fd11:2::32"], labels: {app: web, node: b}}
          - {name: intruder, namespace: default, ips: [10.11.1.40, "fd11:1::40"], labels: {app: intruder}}
          - {name: selfie, namespace: default, ips: [10.11.1.50, "fd11:1::50"], labels: {app: selfie}}
        """;

    private const string Policy = """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: client-egress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: client}}
          egress:
          - toEndpoints: [{matchLabels: {app: web}}]
            toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: web-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: client}}, {matchLabels: {app: intruder}}]
            toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]}]
          ingressDeny:
          - fromEndpoints: [{matchLabels: {app: intruder}}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: selfie-closed, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: selfie}}
          ingress: [{fromEndpoints: [{matchLabels: {app: nobody}}]}]
          egress: [{toEndpoints: [{matchLabels: {app: nobody}}]}]
        """;

    private const string Services = """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          clusterIP: 10.96.0.10
          clusterIPs: [10.96.0.10, "fd00:96::10"]
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, targetPort: 5353, protocol: UDP}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: only-local, namespace: default}
        spec:
          clusterIP: 10.96.0.11
          clusterIPs: [10.96.0.11, "fd00:96::11"]
          selector: {app: web, node: a}
          ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, targetPort: 5353, protocol: UDP}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: selfie, namespace: default}
        spec:
          clusterIP: 10.96.0.12
          clusterIPs: [10.96.0.12, "fd00:96::12"]
          selector: {app: selfie}
          ports: [{port: 80, targetPort: 8080}]
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("gw-local-backend").FullName;
    private readonly PolicyEngine _policy;
    private readonly OverlayPipeline _node;
    private readonly ServiceTable _table;

    public OverlayLocalBackendTests()
    {
        File.WriteAllText(Path.Combine(_dir, "endpoints.yaml"), Endpoints);
        File.WriteAllText(Path.Combine(_dir, "policy.yaml"), Policy);
        var replay = ReplayPolicy.Load(Path.Combine(_dir, "endpoints.yaml"), Path.Combine(_dir, "policy.yaml"));
        _policy = replay.CreateEngine(TimeProvider.System);
        var engine = new WireGuardEngine(new NullOutput(), new WireGuardEngineOptions());
        IpPrefix[] podsA = [IpPrefix.Parse("10.11.1.0/24"), IpPrefix.Parse("fd11:1::/64")];
        IpPrefix[] podsB = [IpPrefix.Parse("10.11.2.0/24"), IpPrefix.Parse("fd11:2::/64")];
        _node = new OverlayPipeline(engine, _policy, new OverlayOptions
        {
            TunnelAddress = IpAddress.Parse("198.51.100.1"),
            PodCidrs = podsA,
            ClusterCidrs = [.. podsA, .. podsB],
        });
        var peerKey = new PublicKey(Enumerable.Repeat((byte)9, 32).ToArray());
        _node.SetPeers([new OverlayPeer(peerKey, IpAddress.Parse("198.51.100.2"), podsB)]);
        _table = ServiceTable.Compile(ServiceLoader.Parse(Services, "services.yaml"), replay.Endpoints);
        _node.Services = new ServiceLoadBalancer(_table);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class NullOutput : ITunnelOutput
    {
        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram)
        {
        }
    }

    private static IpAddress A(string text) => IpAddress.Parse(text);

    /// <summary>A TCP (or UDP) packet with valid checksums, IPv4 or IPv6 by the addresses.</summary>
    internal static byte[] Packet(IpAddress src, ushort sport, IpAddress dst, ushort dport, byte protocol = IpProtocol.Tcp, byte flags = TcpFlag.Syn)
    {
        bool v6 = src.IsV6;
        int ip = v6 ? 40 : 20, l4 = protocol == IpProtocol.Tcp ? 20 : 8, payload = 6;
        var p = new byte[ip + l4 + payload];
        if (v6)
        {
            p[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), (ushort)(l4 + payload));
            p[6] = protocol;
            p[7] = 64;
            src.WriteBytes(p.AsSpan(8));
            dst.WriteBytes(p.AsSpan(24));
        }
        else
        {
            p[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
            p[8] = 64;
            p[9] = protocol;
            src.WriteBytes(p.AsSpan(12));
            dst.WriteBytes(p.AsSpan(16));
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), InternetChecksum.Compute(p.AsSpan(0, 20)));
        }
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(ip), sport);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(ip + 2), dport);
        if (protocol == IpProtocol.Tcp)
        {
            p[ip + 12] = 0x50;
            p[ip + 13] = flags;
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(ip + 4), (ushort)(l4 + payload));
        }
        "hello\n"u8.CopyTo(p.AsSpan(ip + l4));
        Assert.True(TransportChecksum.TryFill(p));
        return p;
    }

    /// <summary>One packet from a pod of node A through the pipeline: the result and the packet as delivered (null unless Deliver).</summary>
    private byte[]? Send(byte[] packet, out OverlayResult result)
    {
        var buffer = new byte[OverlayPipeline.Headroom + packet.Length + 64];
        packet.CopyTo(buffer, OverlayPipeline.Headroom);
        result = _node.Outbound(buffer, OverlayPipeline.Headroom, packet.Length);
        return result.Action == OverlayAction.Deliver ? buffer.AsSpan(result.Offset, result.Length).ToArray() : null;
    }

    private static FlowKey Parse(byte[] packet)
    {
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(packet, out var key));
        Assert.True(TransportChecksum.Verify(packet));
        if (key.Source.IsV4)
        {
            Assert.Equal(0xFFFF, InternetChecksum.Fold(InternetChecksum.Add(0, packet.AsSpan(0, 20))));
        }
        return key;
    }

    private List<FlowEvent> Events()
    {
        var events = new List<FlowEvent>();
        while (_policy.Events.TryRead(out var ev))
        {
            events.Add(ev);
        }
        return events;
    }

    [Theory]
    [InlineData("10.11.1.10", "10.96.0.11", IpProtocol.Tcp)]
    [InlineData("fd11:1::10", "fd00:96::11", IpProtocol.Tcp)]
    [InlineData("10.11.1.10", "10.96.0.11", IpProtocol.Udp)]
    [InlineData("fd11:1::10", "fd00:96::11", IpProtocol.Udp)]
    public void A_local_backend_gets_the_real_client_and_the_client_only_ever_sees_the_vip(string clientText, string vipText, byte protocol)
    {
        var client = A(clientText);
        var vip = A(vipText);
        ushort port = protocol == IpProtocol.Tcp ? (ushort)80 : (ushort)53, target = protocol == IpProtocol.Tcp ? (ushort)8080 : (ushort)5353;
        var atBackend = Send(Packet(client, 40000, vip, port, protocol), out var sent);
        Assert.Equal(OverlayAction.Deliver, sent.Action);
        var k = Parse(atBackend!);
        Assert.Equal(client, k.Source);          // the backend sees the real client
        Assert.Equal(40000, k.SourcePort);
        Assert.Contains(k.Destination.ToString(), client.IsV6 ? new[] { "fd11:1::21", "fd11:1::22" } : new[] { "10.11.1.21", "10.11.1.22" });
        Assert.Equal(target, k.DestinationPort);

        // The local backend's reply reaches the pipeline (pod to pod goes through the tunnel device) and leaves from the VIP.
        var atClient = Send(Packet(k.Destination, target, client, 40000, protocol, TcpFlag.Syn | TcpFlag.Ack), out var replied);
        Assert.Equal(OverlayAction.Deliver, replied.Action);
        var r = Parse(atClient!);
        Assert.Equal((vip, port), (r.Source, r.SourcePort));
        Assert.Equal((client, (ushort)40000), (r.Destination, r.DestinationPort));

        // Later packets keep their backend.
        for (int i = 0; i < 5; i++)
        {
            var again = Send(Packet(client, 40000, vip, port, protocol, TcpFlag.Ack), out _);
            Assert.Equal(k.Destination, Parse(again!).Destination);
        }
        Assert.True(_node.LocalDeliveries >= 7);
    }

    [Theory]
    [InlineData("10.11.1.40", "10.96.0.11")]
    [InlineData("fd11:1::40", "fd00:96::11")]
    public void The_local_backends_ingress_policy_judges_the_real_client(string intruderText, string vipText)
    {
        var intruder = A(intruderText);
        Assert.Null(Send(Packet(intruder, 40000, A(vipText), 80), out var result));
        Assert.Equal(OverlayAction.Drop, result.Action);
        Assert.Equal(OverlayDrop.PolicyDeny, result.Drop);
        Assert.Equal(1, _node.Drops(Direction.Ingress, OverlayDrop.PolicyDeny));   // refused by the backend's ingress policy
        var drop = Assert.Single(Events(), e => e.Verdict == FlowVerdict.Dropped);
        Assert.Equal(_policy.Current.IpCache.Lookup(intruder), drop.SourceIdentity);   // intruder's identity, not a made-up one
        Assert.Equal(DropReason.PolicyDeny, drop.DropReason);
        Assert.Equal(Direction.Ingress, drop.TrafficDirection);
        Assert.Equal("only-local", drop.DestinationService?.Split('/')[^1]);

        // The real client passes, with its own identity.
        Assert.NotNull(Send(Packet(A(intruderText.Replace("40", "10")), 40001, A(vipText), 80), out _));
        var allowed = Assert.Single(Events(), e => e.Verdict == FlowVerdict.Forwarded);
        Assert.Equal(_policy.Current.IpCache.Lookup(A(intruderText.Replace("40", "10"))), allowed.SourceIdentity);
    }

    [Theory]
    [InlineData("10.11.1.50", "10.96.0.12", "169.254.42.1")]
    [InlineData("fd11:1::50", "fd00:96::12", "fd00:a9fe:2a01::1")]
    public void A_pod_reaching_itself_through_its_service_is_hairpinned_through_the_service_loopback(string podText, string vipText, string loopbackText)
    {
        var pod = A(podText);
        var vip = A(vipText);
        var loopback = A(loopbackText);
        // selfie's policy admits nobody, yet a pod may reach itself through its service (as in Cilium).
        var atBackend = Send(Packet(pod, 41000, vip, 80), out var sent);
        Assert.Equal(OverlayAction.Deliver, sent.Action);
        var k = Parse(atBackend!);
        Assert.Equal((loopback, (ushort)41000), (k.Source, k.SourcePort));   // not from itself: its kernel would drop a martian
        Assert.Equal((pod, (ushort)8080), (k.Destination, k.DestinationPort));

        var atClient = Send(Packet(pod, 8080, loopback, 41000, IpProtocol.Tcp, TcpFlag.Syn | TcpFlag.Ack), out var replied);
        Assert.Equal(OverlayAction.Deliver, replied.Action);
        var r = Parse(atClient!);
        Assert.Equal((vip, (ushort)80), (r.Source, r.SourcePort));
        Assert.Equal((pod, (ushort)41000), (r.Destination, r.DestinationPort));

        var again = Send(Packet(pod, 41000, vip, 80, IpProtocol.Tcp, TcpFlag.Ack), out _);
        Assert.Equal(loopback, Parse(again!).Source);

        // Nothing else goes to the loopback address (it would come straight back to the tunnel).
        Assert.Null(Send(Packet(pod, 8080, loopback, 41001, IpProtocol.Tcp, TcpFlag.Syn | TcpFlag.Ack), out var stray));
        Assert.Equal(OverlayDrop.UnknownL3TargetAddress, stray.Drop);
        // And the closed policy still holds without the service.
        Assert.Null(Send(Packet(A(podText.Replace("50", "10")), 42000, pod, 8080), out var direct));
        Assert.Equal(OverlayAction.Drop, direct.Action);
    }

    [Theory]
    [InlineData("10.11.1.10", "10.96.0.10")]
    [InlineData("fd11:1::10", "fd00:96::10")]
    public void Maglev_sends_flows_to_local_and_remote_backends_alike_and_the_pipeline_follows_its_choice(string clientText, string vipText)
    {
        var client = A(clientText);
        var vip = A(vipText);
        var oracle = new ServiceLoadBalancer(_table);
        var counts = new Dictionary<IpAddress, int>();
        int local = 0;
        for (ushort sport = 20000; sport < 22000; sport++)
        {
            var key = new FlowKey { Source = client, SourcePort = sport, Destination = vip, DestinationPort = 80, Protocol = IpProtocol.Tcp, TcpFlags = TcpFlag.Syn };
            Assert.Equal(ServiceLookup.Selected, oracle.Select(in key, 0, out var choice));
            counts[choice.BackendAddress] = counts.GetValueOrDefault(choice.BackendAddress) + 1;
            var delivered = Send(Packet(client, sport, vip, 80), out var result);
            if (_node.Options.PodCidrs.Any(p => p.Contains(choice.BackendAddress)))
            {
                local++;
                Assert.Equal(OverlayAction.Deliver, result.Action);
                Assert.Equal(choice.BackendAddress, Parse(delivered!).Destination);
            }
            else
            {
                // To node B: no session in this test, so the engine holds it for a handshake; never delivered here.
                // To node B: this test's engine has no session with it, so the tunnel layer stops it
                // (a policy or service drop would name another reason); never delivered here.
                Assert.NotEqual(OverlayAction.Deliver, result.Action);
                Assert.True(result.Action != OverlayAction.Drop || result.Drop == OverlayDrop.Tunnel, result.Drop.ToString());
            }
        }
        Assert.Equal(4, counts.Count);
        foreach (var (_, n) in counts)
        {
            Assert.InRange(n, 2000 / 4 * 0.8, 2000 / 4 * 1.2);
        }
        Assert.InRange(local, 2000 / 2 * 0.8, 2000 / 2 * 1.2);
    }

    [Fact]
    public void Pods_of_one_node_talking_directly_are_judged_by_both_policies()
    {
        var delivered = Send(Packet(A("10.11.1.10"), 43000, A("10.11.1.21"), 8080), out var ok);
        Assert.Equal(OverlayAction.Deliver, ok.Action);
        Assert.Equal(A("10.11.1.21"), Parse(delivered!).Destination);
        Assert.NotNull(Send(Packet(A("10.11.1.21"), 8080, A("10.11.1.10"), 43000, IpProtocol.Tcp, TcpFlag.Syn | TcpFlag.Ack), out _));
        Assert.Null(Send(Packet(A("10.11.1.40"), 43000, A("10.11.1.21"), 8080), out var denied));
        Assert.Equal(OverlayDrop.PolicyDeny, denied.Drop);
        Assert.Null(Send(Packet(A("10.11.1.10"), 43000, A("10.11.1.21"), 9999), out var closed));
        Assert.Equal(OverlayDrop.PolicyDenied, closed.Drop);
    }

    [Fact]
    public void Local_backends_replies_and_hairpins_allocate_nothing()
    {
        var client = A("10.11.1.10");
        var vip = A("10.96.0.11");
        var pod = A("10.11.1.50");
        var loopback = A("169.254.42.1");
        const int flows = 64;
        var buffers = new List<(byte[] Buffer, int Length)>();
        void Add(byte[] p)
        {
            var b = new byte[OverlayPipeline.Headroom + p.Length + 64];
            p.CopyTo(b, OverlayPipeline.Headroom);
            buffers.Add((b, p.Length));
        }
        for (ushort i = 0; i < flows; i++)
        {
            ushort sport = (ushort)(30000 + i);
            var syn = Send(Packet(client, sport, vip, 80), out _);
            var backend = Parse(syn!).Destination;
            Send(Packet(pod, sport, A("10.96.0.12"), 80), out _);
            Add(Packet(client, sport, vip, 80, IpProtocol.Tcp, TcpFlag.Ack));                                  // DNAT to a local backend
            Add(Packet(backend, 8080, client, sport, IpProtocol.Tcp, TcpFlag.Ack));                             // reverse NAT
            Add(Packet(pod, sport, A("10.96.0.12"), 80, IpProtocol.Tcp, TcpFlag.Ack));                          // hairpin
            Add(Packet(pod, 8080, loopback, sport, IpProtocol.Tcp, TcpFlag.Ack));                                // its reply
        }
        var copies = buffers.Select(b => b.Buffer.ToArray()).ToArray();
        int Run()
        {
            int delivered = 0;
            for (int i = 0; i < buffers.Count; i++)
            {
                copies[i].CopyTo(buffers[i].Buffer, 0);
                var r = _node.Outbound(buffers[i].Buffer, OverlayPipeline.Headroom, buffers[i].Length);
                delivered += r.Action == OverlayAction.Deliver ? 1 : 0;
            }
            return delivered;
        }
        Assert.Equal(buffers.Count, Run());
        // The least of three windows: an allocation per packet shows in every one, while the one
        // CI run that saw 1,240 bytes here (never reproduced in 18 runs) fits a one-off event on
        // the thread, such as a collection started by a parallel test (dotnet/coreclr#10207).
        long allocated = long.MaxValue;
        for (int attempt = 0; attempt < 3 && allocated != 0; attempt++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            int total = Run() + Run();
            allocated = Math.Min(allocated, GC.GetAllocatedBytesForCurrentThread() - before);
            Assert.Equal(2 * buffers.Count, total);
        }
        Assert.Equal(0, allocated);
    }
}
