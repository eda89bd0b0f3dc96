using Gateway.Node.Flows;
using Gateway.Policy;

namespace Gateway.Node.Tests.Flows;

public class FlowRecordTests
{
    private const string Allowed = """{"time":"2026-11-28T13:00:00.123456789Z","verdict":"FORWARDED","IP":{"source":"10.1.0.10","destination":"10.2.0.20","ipVersion":"IPv4","encrypted":true},"l4":{"TCP":{"source_port":34567,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":256,"labels":["k8s:app=frontend","k8s:io.kubernetes.pod.namespace=default"],"namespace":"default","pod_name":"frontend-1"},"destination":{"identity":257,"labels":["k8s:app=backend","k8s:io.kubernetes.pod.namespace=default"],"namespace":"default","pod_name":"backend-1"},"Type":"L3_L4","node_name":"node-a","traffic_direction":"INGRESS","is_reply":false,"ingress_allowed_by":[{"name":"allow-web","namespace":"default","kind":"CiliumNetworkPolicy","file":"p.yaml","rule":"spec.ingress[0]"}]}""";
    private const string Dropped = """{"time":"2026-11-28T13:00:01.456000000Z","verdict":"DROPPED","drop_reason":133,"drop_reason_desc":"POLICY_DENIED","IP":{"source":"10.1.0.10","destination":"10.2.0.30","ipVersion":"IPv4","encrypted":false},"l4":{"TCP":{"source_port":41000,"destination_port":5432,"flags":{"SYN":true}}},"source":{"identity":256,"labels":["k8s:app=frontend"],"namespace":"default","pod_name":"frontend-1"},"destination":{"identity":258,"labels":["k8s:app=db","k8s:tier=data"],"namespace":"default","pod_name":"db-1"},"Type":"L3_L4","node_name":"node-a","traffic_direction":"EGRESS","is_reply":false}""";
    private const string World = """{"time":"2026-11-28T13:00:02Z","verdict":"DROPPED","drop_reason":181,"drop_reason_desc":"POLICY_DENY","IP":{"source":"fd00::7","destination":"10.2.0.20","ipVersion":"IPv6","encrypted":false},"l4":{"ICMPv6":{"type":128,"code":0}},"source":{"identity":2,"labels":["reserved:world"]},"destination":{"identity":257,"labels":["k8s:app=backend"],"namespace":"default","pod_name":"backend-1"},"traffic_direction":"INGRESS","is_reply":false}""";

    private static FlowRecord Parse(string line)
    {
        Assert.True(FlowRecord.TryParse(line, out var r));
        return r;
    }

    [Fact]
    public void ReadsTheLoggedFields()
    {
        var r = Parse(Allowed);
        Assert.Equal(Allowed, r.Raw);
        Assert.Equal(new DateTime(2026, 11, 28, 13, 0, 0, DateTimeKind.Utc).AddTicks(1_234_567), r.Time);
        Assert.Equal("FORWARDED", r.Verdict);
        Assert.True(r.Encrypted);
        Assert.Equal("TCP", r.L4Protocol);
        Assert.Equal(80, r.DestinationPort);
        Assert.Equal(["SYN"], r.TcpFlags);
        Assert.Equal(256u, r.Source.Identity);
        Assert.Equal("frontend-1", r.Source.PodName);
        Assert.Equal("default/allow-web", r.PolicyName);
        Assert.Equal("node-a", r.NodeName);
        Assert.Equal("INGRESS", r.TrafficDirection);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not json")]
    [InlineData("{\"time\":\"2026-11-28T13:00:00Z\"")]
    [InlineData("[1,2]")]
    [InlineData("{\"verdict\":\"FORWARDED\"}")]
    [InlineData("{\"time\":\"yesterday\",\"verdict\":\"FORWARDED\"}")]
    [InlineData("{\"time\":\"2026-11-28T13:00:00.12x4Z\",\"verdict\":\"FORWARDED\"}")]
    [InlineData("{\"time\":\"2026-11-28T13:00:00Z\",\"verdict\":7}")]
    [InlineData("{\"flow_log\":{\"node_name\":\"a\",\"file\":\"/x\",\"file_offset\":3}}")]
    public void RefusesWhatIsNotAFlowWithoutThrowing(string line)
    {
        Assert.False(FlowRecord.TryParse(line, out _));
    }

    [Fact]
    public void OddButValidShapesParse()
    {
        var r = Parse("""{"time":"2026-11-28T13:00:00Z","verdict":"ERROR","source":{"identity":-1,"labels":[3,"k8s:a=b"]},"l4":{"TCP":"x"}}""");
        Assert.Equal(0u, r.Source.Identity);
        Assert.Equal(["k8s:a=b"], r.Source.Labels);
        Assert.Null(r.L4Protocol);
    }

    [Fact]
    public void CompactOutputLooksLikeHubbles()
    {
        Assert.Equal(
            "Nov 28 13:00:00.123: default/frontend-1:34567 (ID:256) -> default/backend-1:80 (ID:257) policy-verdict:default/allow-web INGRESS FORWARDED (TCP Flags: SYN)",
            FlowFormatter.Compact(Parse(Allowed)));
        Assert.Equal(
            "Nov 28 13:00:01.456: default/frontend-1:41000 (ID:256) -> default/db-1:5432 (ID:258) policy-verdict:none EGRESS DROPPED (Policy denied)",
            FlowFormatter.Compact(Parse(Dropped)));
        Assert.Equal(
            "Nov 28 13:00:02.000: fd00::7 (world) -> default/backend-1 (ID:257) policy-verdict:none INGRESS DROPPED (Policy denied by denylist)",
            FlowFormatter.Compact(Parse(World)));
        var reply = Parse(Allowed.Replace("\"is_reply\":false", "\"is_reply\":true").Replace("2026-11-28", "2026-11-02"));
        Assert.StartsWith("Nov  2 13:00:00.123: default/backend-1:80 (ID:257) <- default/frontend-1:34567 (ID:256)", FlowFormatter.Compact(reply));
        var udp6 = Parse("""{"time":"2026-11-28T13:00:00Z","verdict":"FORWARDED","IP":{"source":"fd00::1","destination":"fd00::2"},"l4":{"UDP":{"source_port":5000,"destination_port":53}},"source":{"identity":2,"labels":["reserved:world"]},"destination":{"identity":16777217,"labels":["reserved:world","cidr:fd00::/64"]}}""");
        Assert.Equal("Nov 28 13:00:00.000: [fd00::1]:5000 (world) -> [fd00::2]:53 (world) policy-verdict:none FORWARDED (UDP)", FlowFormatter.Compact(udp6));
    }

    [Fact]
    public void FiltersCombineLikeHubbles()
    {
        var allowed = Parse(Allowed);
        var dropped = Parse(Dropped);
        var world = Parse(World);

        static FlowFilter F(Action<FlowFilter> setup)
        {
            var f = new FlowFilter();
            setup(f);
            return f;
        }

        Assert.True(new FlowFilter().Matches(allowed));

        var dropsOnly = F(f => Assert.True(f.TryAddVerdict("dropped")));
        Assert.False(dropsOnly.Matches(allowed));
        Assert.True(dropsOnly.Matches(dropped));
        Assert.False(new FlowFilter().TryAddVerdict("ALLOWED"));

        // Label without a source matches any source; with one, only that source.
        Assert.True(F(f => f.TryAddFromLabel("app=frontend", out _)).Matches(allowed));
        Assert.True(F(f => f.TryAddFromLabel("k8s:app=frontend", out _)).Matches(allowed));
        Assert.True(F(f => f.TryAddFromLabel("any:app=frontend", out _)).Matches(allowed));
        Assert.False(F(f => f.TryAddFromLabel("container:app=frontend", out _)).Matches(allowed));
        Assert.False(F(f => f.TryAddFromLabel("app=backend", out _)).Matches(allowed));
        Assert.False(F(f => f.TryAddFromLabel("app=front", out _)).Matches(allowed));
        // A key alone asks only for the key; reserved labels have no value.
        Assert.True(F(f => f.TryAddFromLabel("app", out _)).Matches(allowed));
        Assert.True(F(f => f.TryAddFromLabel("reserved:world", out _)).Matches(world));
        Assert.False(F(f => f.TryAddFromLabel("reserved:world", out _)).Matches(allowed));
        // Comma: all terms on one side; repeated flag: any of them.
        Assert.True(F(f => f.TryAddToLabel("app=db,tier=data", out _)).Matches(dropped));
        Assert.False(F(f => f.TryAddToLabel("app=db,tier=web", out _)).Matches(dropped));
        var dbOrBackend = F(f =>
        {
            Assert.True(f.TryAddToLabel("app=db", out _));
            Assert.True(f.TryAddToLabel("app=backend", out _));
        });
        Assert.True(dbOrBackend.Matches(allowed));
        Assert.True(dbOrBackend.Matches(dropped));
        // Different kinds: all must hold.
        var dropsToBackend = F(f =>
        {
            f.TryAddVerdict("DROPPED");
            f.TryAddToLabel("app=backend", out _);
        });
        Assert.False(dropsToBackend.Matches(allowed));
        Assert.False(dropsToBackend.Matches(dropped));
        Assert.True(dropsToBackend.Matches(world));

        Assert.True(F(f => f.AddFromIdentity(2)).Matches(world));
        Assert.False(F(f => f.AddFromIdentity(2)).Matches(allowed));
        Assert.True(F(f => { f.AddToIdentity(258); f.AddToIdentity(257); }).Matches(allowed));
        Assert.False(F(f => f.AddToIdentity(258)).Matches(allowed));

        Assert.False(new FlowFilter().TryAddFromLabel("", out var error));
        Assert.Contains("not a label filter", error);
        Assert.False(new FlowFilter().TryAddFromLabel("app=a,,b=c", out _));
        Assert.False(new FlowFilter().TryAddFromLabel(":app=a", out _));
    }

    [Fact]
    public void LogTimesKeepNanoseconds()
    {
        Assert.Equal("1970-01-01T00:00:00.000000001Z", FlowLogJson.FormatTime(1));
        Assert.Equal("1969-12-31T23:59:59.999999999Z", FlowLogJson.FormatTime(-1));
        Assert.Equal("2026-11-28T13:00:00.123456789Z", FlowLogJson.FormatTime(1_795_870_800_123_456_789));
        Assert.True(FlowRecord.TryParseTime("2026-11-28T13:00:00.123456789Z", out var t));
        Assert.Equal(1_795_870_800_123_456_700 / 100, (t - DateTime.UnixEpoch).Ticks);
        Assert.Equal("Policy denied", FlowLogJson.DropReasonText(DropReason.PolicyDenied));
    }

    [Theory]
    [InlineData(133, "POLICY_DENIED", "Policy denied")]
    [InlineData(181, "POLICY_DENY", "Policy denied by denylist")]
    [InlineData(134, "INVALID_PACKET_DROPPED", "Invalid packet")]
    [InlineData(160, "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT", "No tunnel/encapsulation endpoint")]
    [InlineData(170, "ENCAPSULATION_TRAFFIC_IS_PROHIBITED", "Encapsulation traffic is prohibited")]
    [InlineData(171, "INVALID_IDENTITY", "Invalid identity")]
    [InlineData(172, "UNKNOWN_SENDER", "Unknown sender")]
    [InlineData(1, "DROP_REASON_UNKNOWN", "DROP_REASON_UNKNOWN")]
    public void OverlayDropReasonsAreNamedAsHubbleDoes(byte number, string name, string text)
    {
        Assert.Equal(name, FlowLogJson.DropReasonName((DropReason)number));
        Assert.Equal(text, FlowLogJson.DropReasonText((DropReason)number));
    }
}
