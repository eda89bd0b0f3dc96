using System.Text.Json;
using Gateway.Datapath;

namespace Gateway.Policy.Tests;

public class FlowEventTests
{
    [Fact]
    public void FullRingCountsLostEventsAndKeepsOrder()
    {
        var ring = new FlowEventRing(4);
        for (int i = 0; i < 6; i++)
        {
            ring.TryWrite(new FlowEvent { RuleId = i });
        }
        Assert.Equal(2, ring.Lost);
        for (int i = 0; i < 4; i++)
        {
            Assert.True(ring.TryRead(out var e));
            Assert.Equal(i, e.RuleId);
        }
        Assert.False(ring.TryRead(out _));
        Assert.True(ring.TryWrite(new FlowEvent { RuleId = 9 }));
        Assert.True(ring.TryRead(out var last));
        Assert.Equal(9, last.RuleId);
    }

    [Fact]
    public void ConcurrentWritersLoseNothingButWhatDidNotFit()
    {
        var ring = new FlowEventRing(1 << 12);
        const int perWriter = 3000;
        Parallel.For(0, 4, w =>
        {
            for (int i = 0; i < perWriter; i++)
            {
                ring.TryWrite(new FlowEvent { RuleId = w * perWriter + i });
            }
        });
        var seen = new HashSet<int>();
        while (ring.TryRead(out var e))
        {
            Assert.True(seen.Add(e.RuleId));
        }
        Assert.Equal(4 * perWriter, seen.Count + ring.Lost);
        Assert.Equal(ring.Capacity, seen.Count);
    }

    [Fact]
    public void EngineEmitsHubbleStyleEventsForNewFlowsAndDropsOnly()
    {
        var time = new ManualClock(DateTimeOffset.Parse("2026-01-02T03:04:05Z", System.Globalization.CultureInfo.InvariantCulture));
        var identities = new IdentityAllocator();
        var engine = new PolicyEngine(identities, new Conntrack(1024), new FlowEventRing(64), time);
        engine.Apply(
            new PolicySet(PolicyLoader.Parse("""
                apiVersion: cilium.io/v2
                kind: CiliumNetworkPolicy
                metadata: {name: web}
                spec:
                  endpointSelector: {matchLabels: {app: b}}
                  ingress:
                  - fromEndpoints: [{matchLabels: {app: a}}]
                    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
                  ingressDeny:
                  - fromEntities: [world]
                """, "web.yaml"), ["web.yaml"]),
            EndpointFile.Parse(Helpers.Endpoints, "endpoints.yaml", identities));

        var syn = new FlowKey { Source = IpAddress.Parse("10.0.0.1"), Destination = IpAddress.Parse("10.0.0.2"), Protocol = IpProtocol.Tcp, SourcePort = 40000, DestinationPort = 80, TcpFlags = TcpFlag.Syn };
        Assert.True(engine.Process(syn, 0).Allowed);
        var synAck = syn.Reversed();
        synAck.TcpFlags = TcpFlag.Syn | TcpFlag.Ack;
        var reply = engine.Process(synAck, 1);
        Assert.True(reply.Allowed);
        Assert.Equal(CtResult.Reply, reply.Conntrack);
        Assert.Equal(CtResult.Established, engine.Process(syn with { TcpFlags = TcpFlag.Ack }, 2).Conntrack);

        var fromWorld = syn with { Source = IpAddress.Parse("198.51.100.7") };
        var drop = engine.Process(fromWorld, 3);
        Assert.False(drop.Allowed);
        Assert.Equal(DropReason.PolicyDeny, drop.DropReason);
        var other = syn with { Source = IpAddress.Parse("10.0.0.3"), DestinationPort = 81 };
        Assert.Equal(DropReason.PolicyDenied, engine.Process(other, 4).DropReason);
        Assert.Equal(CtResult.New, engine.Conntrack.Lookup(other, 5)); // no state for dropped packets

        var events = new List<FlowEvent>();
        while (engine.Events.TryRead(out var e))
        {
            events.Add(e);
        }
        Assert.Equal(3, events.Count); // new flow + two drops; the reply and established packet are silent

        var json = JsonDocument.Parse(FlowEventJson.Serialize(events[0], engine.Current)).RootElement;
        Assert.Equal("2026-01-02T03:04:05.000000000Z", json.GetProperty("time").GetString());
        Assert.Equal("FORWARDED", json.GetProperty("verdict").GetString());
        Assert.Equal("10.0.0.1", json.GetProperty("IP").GetProperty("source").GetString());
        Assert.Equal("IPv4", json.GetProperty("IP").GetProperty("ipVersion").GetString());
        Assert.False(json.GetProperty("IP").GetProperty("encrypted").GetBoolean());
        Assert.Equal(80, json.GetProperty("l4").GetProperty("TCP").GetProperty("destination_port").GetInt32());
        Assert.True(json.GetProperty("l4").GetProperty("TCP").GetProperty("flags").GetProperty("SYN").GetBoolean());
        Assert.Equal("a", json.GetProperty("source").GetProperty("pod_name").GetString());
        Assert.Equal("default", json.GetProperty("destination").GetProperty("namespace").GetString());
        Assert.Equal((int)engine.Current.Id("b"), json.GetProperty("destination").GetProperty("identity").GetInt32());
        Assert.Contains("k8s:app=a", json.GetProperty("source").GetProperty("labels").EnumerateArray().Select(l => l.GetString()));
        Assert.Equal("INGRESS", json.GetProperty("traffic_direction").GetString());
        Assert.False(json.GetProperty("is_reply").GetBoolean());
        Assert.Equal("web", json.GetProperty("ingress_allowed_by")[0].GetProperty("name").GetString());

        var dropJson = JsonDocument.Parse(FlowEventJson.Serialize(events[1], engine.Current)).RootElement;
        Assert.Equal("DROPPED", dropJson.GetProperty("verdict").GetString());
        Assert.Equal("POLICY_DENY", dropJson.GetProperty("drop_reason_desc").GetString());
        Assert.Equal(2, dropJson.GetProperty("source").GetProperty("identity").GetInt32());
        Assert.Equal("spec.ingressDeny[0]", dropJson.GetProperty("ingress_denied_by")[0].GetProperty("rule").GetString());
        var deniedJson = JsonDocument.Parse(FlowEventJson.Serialize(events[2], engine.Current)).RootElement;
        Assert.Equal("POLICY_DENIED", deniedJson.GetProperty("drop_reason_desc").GetString());
    }

    [Fact]
    public void WithoutDestinationIdentityOnHitOnlyTrackedFlowsSkipTheLookup()
    {
        var identities = new IdentityAllocator();
        var engine = new PolicyEngine(identities, new Conntrack(1024), new FlowEventRing(64), new ManualClock(DateTimeOffset.UnixEpoch));
        engine.Apply(
            new PolicySet(PolicyLoader.Parse("""
                apiVersion: cilium.io/v2
                kind: CiliumNetworkPolicy
                metadata: {name: web}
                spec:
                  endpointSelector: {matchLabels: {app: b}}
                  ingress:
                  - fromEndpoints: [{matchLabels: {app: a}}]
                    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
                """, "web.yaml"), ["web.yaml"]),
            EndpointFile.Parse(Helpers.Endpoints, "endpoints.yaml", identities));
        uint a = engine.Current.Id("a"), b = engine.Current.Id("b");
        var syn = new FlowKey { Source = IpAddress.Parse("10.0.0.1"), Destination = IpAddress.Parse("10.0.0.2"), Protocol = IpProtocol.Tcp, SourcePort = 40000, DestinationPort = 80, TcpFlags = TcpFlag.Syn };

        // A new flow is decided (and reported) with both identities either way.
        var first = engine.Process(syn, 0, destinationIdentityOnHit: false);
        Assert.True(first.Allowed);
        Assert.Equal(CtResult.New, first.Conntrack);
        Assert.Equal((a, b), (first.SourceIdentity, first.DestinationIdentity));
        var denied = engine.Process(syn with { DestinationPort = 81 }, 0, destinationIdentityOnHit: false);
        Assert.False(denied.Allowed);
        Assert.Equal((a, b), (denied.SourceIdentity, denied.DestinationIdentity));

        // A tracked flow: the source's identity as always, the destination's not looked up.
        var ack = syn with { TcpFlags = TcpFlag.Ack };
        var hit = engine.Process(ack, 1, destinationIdentityOnHit: false);
        Assert.Equal((true, CtResult.Established, a, 0u), (hit.Allowed, hit.Conntrack, hit.SourceIdentity, hit.DestinationIdentity));
        var reply = engine.Process(ack.Reversed(), 2, PolicyChecks.Ingress, sourceIdentity: b, destinationIdentityOnHit: false);
        Assert.Equal((true, CtResult.Reply, b, 0u), (reply.Allowed, reply.Conntrack, reply.SourceIdentity, reply.DestinationIdentity));
        // The default keeps the lookup.
        Assert.Equal(b, engine.Process(ack, 3).DestinationIdentity);
    }

    [Fact]
    public void TimeHasNanosecondsAndIcmpHasTypeAndCode()
    {
        var e = new FlowEvent
        {
            TimeUnixNs = 1_767_323_045_123_456_789,
            Verdict = FlowVerdict.Dropped,
            DropReason = DropReason.PolicyDenied,
            TrafficDirection = Direction.Egress,
            Key = new FlowKey { Source = IpAddress.Parse("fd00::1"), Destination = IpAddress.Parse("fd00::2"), Protocol = IpProtocol.Icmpv6, IcmpType = 128 },
            SourceIdentity = 256,
            DestinationIdentity = 2,
            RuleId = -1,
        };
        var json = JsonDocument.Parse(FlowEventJson.Serialize(e, null)).RootElement;
        Assert.Equal("2026-01-02T03:04:05.123456789Z", json.GetProperty("time").GetString());
        Assert.Equal("IPv6", json.GetProperty("IP").GetProperty("ipVersion").GetString());
        Assert.Equal(128, json.GetProperty("l4").GetProperty("ICMPv6").GetProperty("type").GetInt32());
        Assert.Equal(133, json.GetProperty("drop_reason").GetInt32());
        Assert.Equal("EGRESS", json.GetProperty("traffic_direction").GetString());
        Assert.False(json.TryGetProperty("egress_denied_by", out _));
    }

    private sealed class ManualClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
