using System.Collections.Concurrent;
using Gateway.Datapath;
using Gateway.LoadBalancer;
using Gateway.Node.Overlay;
using Gateway.Policy;

namespace Gateway.Node.Tests.Daemon;

/// <summary>
/// A backend on the client's own node, through the whole daemon (memory devices): the send path
/// hands local deliveries to the host injector (the kernel, in the real daemon), replies leave
/// from the VIP, a hairpin's flow entry never makes a teardown to the loopback address, and the
/// reader thread allocates nothing per packet.
/// </summary>
public class MemoryNodeLocalBackendTests
{
    private const string Services = """
        apiVersion: v1
        kind: Service
        metadata: {name: local}
        spec: {clusterIP: 10.96.0.30, selector: {app: frontend}, ports: [{port: 80}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: empty}
        spec: {clusterIP: 10.96.0.99, selector: {app: nobody}, ports: [{port: 80}]}
        """;

    private static readonly IpAddress Vip = IpAddress.Parse("10.96.0.30");

    private sealed class RecordingInjector : IHostInjector
    {
        public readonly ConcurrentQueue<byte[]> Packets = new();
        public volatile bool Record = true;
        public int Count;

        public bool Inject(ReadOnlySpan<byte> ipPacket)
        {
            Interlocked.Increment(ref Count);
            if (Record)
            {
                Packets.Enqueue(ipPacket.ToArray());
            }
            return true;
        }

        public FlowKey Take()
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            byte[]? packet;
            while (!Packets.TryDequeue(out packet))
            {
                Assert.True(DateTime.UtcNow < deadline, "nothing was handed to the kernel");
                Thread.Sleep(5);
            }
            Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(packet, out var key));
            Assert.True(TransportChecksum.Verify(packet));
            return key;
        }
    }

    /// <summary>The backend Maglev picks for a client's flow, from the same files the nodes load.</summary>
    private static IpAddress Choice(MemoryNodes nodes, string client, ushort port)
    {
        var endpoints = EndpointFile.Load(Path.Combine(nodes.Folder, "endpoints.yaml"), new IdentityAllocator());
        var lb = new ServiceLoadBalancer(ServiceTable.Compile(ServiceLoader.Parse(Services, "services.yaml"), endpoints));
        var key = new FlowKey { Source = IpAddress.Parse(client), SourcePort = port, Destination = Vip, DestinationPort = 80, Protocol = IpProtocol.Tcp };
        Assert.Equal(ServiceLookup.Selected, lb.Select(in key, 0, out var choice));
        return choice.BackendAddress;
    }

    [Fact]
    public async Task Local_backends_are_delivered_to_the_kernel_answer_from_the_vip_and_hairpins_end_cleanly()
    {
        var injector = new RecordingInjector();
        await using var nodes = new MemoryNodes(overlay: true, services: Services, injector: injector, workers: 0);
        nodes.Network.Tap = null; // the test's underlay log grows a list: not the data path's allocation
        var self = IpAddress.Parse("10.11.1.10");

        // intruder (no egress policy; frontends have no ingress policy) reaches a frontend on its own node.
        ushort port = Enumerable.Range(40000, 100).Select(p => (ushort)p).First(p => Choice(nodes, "10.11.1.20", p) != self);
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.20", "10.96.0.30", port, 80, 1, 0, TcpFlag.Syn));
        var atBackend = injector.Take();
        Assert.Equal((IpAddress.Parse("10.11.1.20"), port), (atBackend.Source, atBackend.SourcePort));
        Assert.Equal(Choice(nodes, "10.11.1.20", port), atBackend.Destination);
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4(atBackend.Destination.ToString(), "10.11.1.20", 80, port, 1, 0, TcpFlag.Syn | TcpFlag.Ack));
        var atClient = injector.Take();
        Assert.Equal((Vip, (ushort)80), (atClient.Source, atClient.SourcePort));

        // frontend-0 reaches itself: hairpinned through the service loopback, answered from the VIP.
        ushort hairpin = Enumerable.Range(41000, 200).Select(p => (ushort)p).First(p => Choice(nodes, "10.11.1.10", p) == self);
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.10", "10.96.0.30", hairpin, 80, 1, 0, TcpFlag.Syn));
        var looped = injector.Take();
        Assert.Equal((IpAddress.Parse("169.254.42.1"), self), (looped.Source, looped.Destination));
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.10", "169.254.42.1", 80, hairpin, 1, 0, TcpFlag.Syn | TcpFlag.Ack));
        Assert.Equal((Vip, self), (injector.Take() is var back ? (back.Source, back.Destination) : default));
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.10", "10.96.0.30", hairpin, 80, 2, 0, TcpFlag.Ack));
        injector.Take();

        // No per-packet allocation on the reader thread for local deliveries.
        injector.Record = false;
        var ack = MemoryNodes.Tcp4("10.11.1.20", "10.96.0.30", port, 80, 2, 1000, TcpFlag.Ack);
        void Burst(int packets)
        {
            int start = Volatile.Read(ref injector.Count);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            for (int i = 0; i < packets; i++)
            {
                nodes.TunA.Inject(ack);
                // Paced as the other allocation tests: the device's queue never has to grow.
                while (i % 64 == 63 && Volatile.Read(ref injector.Count) - start < i - 32)
                {
                    Assert.True(DateTime.UtcNow < deadline, "the burst did not arrive");
                    Thread.Yield();
                }
            }
            while (Volatile.Read(ref injector.Count) - start < packets)
            {
                Assert.True(DateTime.UtcNow < deadline, "the burst did not arrive");
                Thread.Sleep(1);
            }
        }
        Burst(3000); // warm-up: JIT tiers, pools
        long before = nodes.A.DataPathAllocatedBytes;
        const int burst = 5000;
        Burst(burst);
        long allocated = nodes.A.DataPathAllocatedBytes - before;
        Assert.True(allocated < burst / 10, $"the send path allocated {allocated} bytes for {burst} local deliveries");
        injector.Record = true;

        // frontend-0 leaves the service: its hairpin flow ends, and only its real client hears of it.
        string endpoints = Path.Combine(nodes.Folder, "endpoints.yaml");
        File.WriteAllText(endpoints, string.Join('\n', File.ReadAllLines(endpoints).Select(l => l.Contains("10.11.1.10]", StringComparison.Ordinal) ? l.Replace("app: frontend", "app: retired") : l)));
        Assert.True(nodes.A.Overlay!.ReloadPolicy());
        var rst = injector.Take();
        Assert.Equal((Vip, (ushort)80, self, hairpin), (rst.Source, rst.SourcePort, rst.Destination, rst.DestinationPort));
        Assert.Equal(TcpFlag.Rst, (byte)(rst.TcpFlags & TcpFlag.Rst));
        Assert.Empty(injector.Packets);
        Assert.Equal(1, nodes.A.Overlay.ServiceFlowsEnded);
    }

    [Fact]
    public async Task A_local_delivery_takes_from_the_destination_pods_ingress_bucket()
    {
        var injector = new RecordingInjector { Record = false };
        await using var nodes = new MemoryNodes(overlay: true, services: Services, injector: injector, workers: 0);
        nodes.Network.Tap = null;
        // frontend-1 gets an ingress limit of 8 kbit/s: a bucket of 1,000 bytes, full at the start.
        string endpoints = Path.Combine(nodes.Folder, "endpoints.yaml");
        File.WriteAllText(endpoints, string.Join('\n', File.ReadAllLines(endpoints).Select(l => l.Contains("10.11.1.11]", StringComparison.Ordinal)
            ? l.Replace("labels: {app: frontend}}", "labels: {app: frontend}, annotations: {kubernetes.io/ingress-bandwidth: 8k}}") : l)));
        Assert.True(nodes.A.Overlay!.ReloadPolicy());
        var shaping = Assert.Single(nodes.A.Overlay.Bandwidth!.Endpoints);
        Assert.Equal("default/frontend-1", shaping.Name);

        // intruder -> frontend-1 directly (pods of one node while the node has services: delivered
        // to the kernel by Gateway). The clock stands still, so the bucket does not refill.
        var packet = MemoryNodes.Tcp4("10.11.1.20", "10.11.1.11", 40000, 80, 1, 0, TcpFlag.Syn);
        const int sent = 100;
        for (int i = 0; i < sent; i++)
        {
            nodes.TunA.Inject(packet);
        }
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (Volatile.Read(ref injector.Count) + shaping.IngressDropCount < sent)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{injector.Count} delivered, {shaping.IngressDropCount} dropped of {sent}");
            Thread.Sleep(1);
        }
        Assert.Equal(1000 / packet.Length, injector.Count);
        Assert.Equal(sent - 1000 / packet.Length, shaping.IngressDropCount);
        Assert.Equal(1000 / packet.Length * packet.Length, shaping.IngressPassedByteCount);
    }

    [Fact]
    public async Task In_ipsec_mode_local_backends_and_the_unreachable_of_an_empty_vip_reach_the_kernel_too()
    {
        var injector = new RecordingInjector();
        await using var nodes = new MemoryNodes(services: Services, ipsecKeys: "3+ rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128\n", injector: injector);
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.20", "10.96.0.30", 40000, 80, 1, 0, TcpFlag.Syn));
        var atBackend = injector.Take();
        Assert.Equal(IpAddress.Parse("10.11.1.20"), atBackend.Source);
        Assert.Equal(Choice(nodes, "10.11.1.20", 40000), atBackend.Destination);
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4(atBackend.Destination.ToString(), "10.11.1.20", 80, 40000, 1, 0, TcpFlag.Syn | TcpFlag.Ack));
        Assert.Equal(Vip, injector.Take().Source);

        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.20", "10.96.0.99", 40001, 80, 1, 0, TcpFlag.Syn));
        var unreachable = injector.Take();
        Assert.Equal((IpAddress.Parse("10.96.0.99"), IpProtocol.Icmp, (byte)3, (byte)3), (unreachable.Source, unreachable.Protocol, unreachable.IcmpType, unreachable.IcmpCode));
    }
}
