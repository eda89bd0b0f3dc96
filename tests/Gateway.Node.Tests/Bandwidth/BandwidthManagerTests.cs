using Gateway.Datapath;
using Gateway.Node.Bandwidth;
using Gateway.Policy;

namespace Gateway.Node.Tests.Bandwidth;

/// <summary>The bandwidth manager on a clock the test moves: which packets wait, which leave,
/// which are dropped (with a flow event), reloads that keep state, and no allocation per packet.</summary>
public class BandwidthManagerTests
{
    private sealed class TestClock : TimeProvider
    {
        public long Nanos = 1_000_000_000_000;
        public override long TimestampFrequency => 1_000_000_000;
        public override long GetTimestamp() => Nanos;
        public override DateTimeOffset GetUtcNow() => new(2026, 12, 7, 0, 0, 0, TimeSpan.Zero);
    }

    private static (EndpointTable Table, PolicyEngine Policy) Load(string slowEgress = "8M", string slowIngress = "8M")
    {
        string yaml = $$$"""
            endpoints:
              - {name: slow, ips: [10.11.1.10], labels: {app: slow}, annotations: {kubernetes.io/egress-bandwidth: {{{slowEgress}}}, kubernetes.io/ingress-bandwidth: {{{slowIngress}}}}}
              - {name: free, ips: [10.11.1.11], labels: {app: free}}
              - {name: remote, ips: [10.11.2.10], labels: {app: remote}, annotations: {kubernetes.io/egress-bandwidth: 1M}}
            """;
        var identities = new IdentityAllocator();
        var table = EndpointFile.Parse(yaml, "eps.yaml", identities);
        var policy = new PolicyEngine(identities, new Conntrack(1024), new FlowEventRing(1024));
        policy.Apply(PolicySet.Empty, table);
        return (table, policy);
    }

    private static readonly IpPrefix Local = IpPrefix.Parse("10.11.1.0/24");

    private static byte[] Udp(string source, string destination, int length)
    {
        var packet = new byte[length];
        packet[0] = 0x45;
        packet[2] = (byte)(length >> 8);
        packet[3] = (byte)length;
        packet[8] = 64;
        packet[9] = IpProtocol.Udp;
        IpAddress.Parse(source).WriteBytes(packet.AsSpan(12));
        IpAddress.Parse(destination).WriteBytes(packet.AsSpan(16));
        packet[20] = 0x30;
        packet[22] = 0x30;
        packet[24] = (byte)((length - 20) >> 8);
        packet[25] = (byte)(length - 20);
        return packet;
    }

    private static PacketBuffer[] Buffers(int n)
    {
        var pool = new PacketBufferPool(n, 2048);
        var buffers = new PacketBuffer[n];
        for (int i = 0; i < n; i++)
        {
            pool.TryRent(out buffers[i]);
        }
        return buffers;
    }

    [Fact]
    public void LimitedPodsPacketsWaitForTheirDepartureAndOthersPass()
    {
        var clock = new TestClock();
        var (table, policy) = Load();
        var manager = new BandwidthManager(clock, policy);
        manager.Apply(table.All, Local.Contains);
        // Only the local pod with annotations is managed; the remote pod's node enforces its own.
        Assert.Equal(["default/slow"], manager.Endpoints.Select(e => e.Name));
        var free = Udp("10.11.1.11", "10.11.2.10", 1000);
        Assert.Equal(EgressDecision.Pass, manager.Egress(free));
        var slow = Udp("10.11.1.10", "10.11.2.10", 1000); // 8 Mbit/s: 1000 bytes = 1 ms
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(EgressDecision.Held, manager.Egress(slow));
        }
        var buffers = Buffers(8);
        // The first leaves at once; the others at 1, 2, 3, 4 ms.
        Assert.Equal(1, manager.Release(clock.GetTimestamp(), buffers, 128, out long next));
        Assert.Equal(clock.Nanos + 1_000_000, next);
        Assert.True(buffers[0].Data.SequenceEqual(slow));
        clock.Nanos += 2_500_000;
        Assert.Equal(2, manager.Release(clock.Nanos, buffers, 128, out next));
        clock.Nanos += 10_000_000;
        Assert.Equal(2, manager.Release(clock.Nanos, buffers, 128, out next));
        Assert.Equal(long.MaxValue, next);
        var shaping = manager.Endpoints[0];
        Assert.Equal(5, shaping.PacedPacketCount);
        Assert.Equal(0, shaping.QueueDepth);
    }

    [Fact]
    public void BeyondTheHorizonPacketsAreDroppedWithAFlowEvent()
    {
        var clock = new TestClock();
        var (table, policy) = Load();
        var manager = new BandwidthManager(clock, policy);
        manager.Apply(table.All, Local.Contains);
        var slow = Udp("10.11.1.10", "10.11.2.10", 1000);
        int held = 0, dropped = 0;
        for (int i = 0; i < 3000; i++)
        {
            switch (manager.Egress(slow))
            {
                case EgressDecision.Held: held++; break;
                case EgressDecision.Dropped: dropped++; break;
            }
        }
        Assert.Equal(2000, held);  // 2 s of 1 ms packets
        Assert.Equal(1000, dropped);
        Assert.Equal(1000, manager.Endpoints[0].HorizonDropCount);
        Assert.True(policy.Events.TryRead(out var ev));
        Assert.Equal(DropReason.EdtHorizon, ev.DropReason);
        Assert.Equal(Direction.Egress, ev.TrafficDirection);
        Assert.Equal(table.FindByName("slow")!.Identity.Id, ev.SourceIdentity);
        Assert.Equal("REACHED_EDT_RATE_LIMITING_DROP_HORIZON", FlowEvent.DropReasonName(ev.DropReason));
    }

    [Fact]
    public void IngressBucketDropsWhenEmptyAndRefills()
    {
        var clock = new TestClock();
        var (table, policy) = Load();
        var manager = new BandwidthManager(clock, policy);
        manager.Apply(table.All, Local.Contains);
        var toSlow = Udp("10.11.2.10", "10.11.1.10", 1000);
        int admitted = Enumerable.Range(0, 1500).Count(_ => manager.AdmitIngress(toSlow));
        Assert.Equal(1000, admitted); // one second at 8 Mbit/s
        Assert.Equal(500, manager.Endpoints[0].IngressDropCount);
        clock.Nanos += 10_000_000; // 10 ms: 10 packets
        Assert.Equal(10, Enumerable.Range(0, 20).Count(_ => manager.AdmitIngress(toSlow)));
        Assert.True(manager.AdmitIngress(Udp("10.11.2.10", "10.11.1.11", 1000)));
    }

    [Fact]
    public void AReloadChangesTheRateAndKeepsTheQueue()
    {
        var clock = new TestClock();
        var (table, policy) = Load();
        var manager = new BandwidthManager(clock, policy);
        manager.Apply(table.All, Local.Contains);
        var slow = Udp("10.11.1.10", "10.11.2.10", 1000);
        for (int i = 0; i < 10; i++)
        {
            manager.Egress(slow);
        }
        var before = manager.Endpoints[0];
        manager.Apply(Load("80M").Table.All, Local.Contains);
        Assert.Same(before, manager.Endpoints[0]);
        Assert.Equal(80_000_000, before.EgressBitsPerSecond);
        Assert.Equal(10, before.QueueDepth); // nothing lost
        // The pod loses its annotations: it is no longer managed and its queue is let go.
        manager.Apply(Load("0").Table.All.Where(e => e.Name != "slow"), Local.Contains);
        Assert.Empty(manager.Endpoints);
        Assert.Equal(EgressDecision.Pass, manager.Egress(slow));
    }

    [Fact]
    public void StoredLimitsOverrideTheAnnotationOfTheirDirectionAndKeepTheQueue()
    {
        var clock = new TestClock();
        var (table, policy) = Load();
        var manager = new BandwidthManager(clock, policy);
        manager.Apply(table.All, Local.Contains);
        var slow = Udp("10.11.1.10", "10.11.2.10", 1000);
        for (int i = 0; i < 5; i++)
        {
            manager.Egress(slow);
        }
        var before = manager.Endpoints[0];
        // etcd (cluster mode) sets slow's egress and limits free, which the file leaves unlimited;
        // a stored limit for a pod of another node changes nothing here.
        var stored = new Dictionary<string, BandwidthLimits>
        {
            ["default/slow"] = new(20_000_000, 0),
            ["default/free"] = new(0, 5_000_000),
            ["default/remote"] = new(3_000_000, 0),
        };
        manager.Apply(table.All, Local.Contains, stored);
        Assert.Equal(["default/slow", "default/free"], manager.Endpoints.Select(e => e.Name));
        Assert.Same(before, manager.Endpoints[0]);
        Assert.Equal(20_000_000, before.EgressBitsPerSecond);
        Assert.Equal(8_000_000, before.IngressBitsPerSecond); // the file's, not overridden
        Assert.Equal(5, before.QueueDepth);
        Assert.Equal(0, manager.Endpoints[1].EgressBitsPerSecond);
        Assert.Equal(5_000_000, manager.Endpoints[1].IngressBitsPerSecond);
        // The stored records go: the file's annotations count again.
        manager.Apply(table.All, Local.Contains, new Dictionary<string, BandwidthLimits>());
        Assert.Equal(["default/slow"], manager.Endpoints.Select(e => e.Name));
        Assert.Equal(8_000_000, before.EgressBitsPerSecond);
    }

    [Fact]
    public void EgressIngressAndReleaseAllocateNothingPerPacket()
    {
        var clock = new TestClock();
        var (table, policy) = Load("80M", "80M");
        var manager = new BandwidthManager(clock, policy: null);
        manager.Apply(table.All, Local.Contains);
        var slow = Udp("10.11.1.10", "10.11.2.10", 1000);
        var toSlow = Udp("10.11.2.10", "10.11.1.10", 1000);
        var free = Udp("10.11.1.11", "10.11.2.10", 1000);
        var buffers = Buffers(64);
        int sum = 0;
        void Run()
        {
            for (int i = 0; i < 2000; i++)
            {
                clock.Nanos += 50_000;
                sum += (int)manager.Egress(slow) + (int)manager.Egress(free) + (manager.AdmitIngress(toSlow) ? 1 : 0);
                if (i % 16 == 0)
                {
                    sum += manager.Release(clock.Nanos, buffers, 128, out _);
                }
            }
        }
        Run();
        // The least of three windows: an allocation per packet shows in every one, while a one-off
        // of the runtime on this thread (one full Node run saw 2,240 bytes once) shows in one.
        long allocated = long.MaxValue;
        for (int window = 0; window < 3 && allocated != 0; window++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            Run();
            allocated = Math.Min(allocated, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        if (allocated != 0)
        {
            throw new InvalidOperationException($"the bandwidth manager allocated {allocated} bytes for 2000 packets ({sum})");
        }
    }
}
