using Gateway.Datapath;

namespace Gateway.Policy.Tests;

/// <summary>
/// Verdicts for the policy examples of the Cilium documentation (fixtures/policies/cilium-docs,
/// each file names its page), traced the way `gateway policy trace` does, with the outcome the
/// documentation describes for each example.
/// </summary>
public class DocsExamplesTests
{
    private static TraceResult Trace(string file, string from, string to, string dport)
    {
        var identities = new IdentityAllocator();
        var endpoints = EndpointFile.Load(TestPaths.Fixture("docs-endpoints.yaml"), identities);
        var policies = PolicyLoader.Load(TestPaths.Docs(file));
        Assert.True(PolicyTracer.TryParsePort(dport, out byte proto, out ushort port, out _));
        return PolicyTracer.Trace(policies, endpoints, from, to, proto, port);
    }

    [Theory]
    // L3 only: frontend -> backend allowed on any port and protocol, others default-denied at ingress.
    [InlineData("l3-simple-ingress.yaml", "frontend", "backend", "80/TCP", true)]
    [InlineData("l3-simple-ingress.yaml", "frontend", "backend", "5353/UDP", true)]
    [InlineData("l3-simple-ingress.yaml", "other", "backend", "80/TCP", false)]
    [InlineData("l3-simple-ingress.yaml", "frontend-prod", "backend", "80/TCP", false)] // other namespace
    [InlineData("l3-simple-ingress.yaml", "backend", "frontend", "80/TCP", true)]       // frontend has no policy
    [InlineData("l3-ingress-allow-all.yaml", "other", "victim", "22/TCP", true)]
    [InlineData("l3-ingress-allow-all.yaml", "frontend-prod", "victim", "22/TCP", false)] // {} = policy namespace only
    [InlineData("l3-ingress-allow-all.yaml", "8.8.8.8", "victim", "22/TCP", false)]
    [InlineData("l3-simple-egress.yaml", "frontend", "backend", "443/TCP", true)]
    [InlineData("l3-simple-egress.yaml", "frontend", "other", "443/TCP", false)]
    [InlineData("l3-simple-egress.yaml", "frontend", "8.8.8.8", "53/UDP", false)]
    [InlineData("l3-egress-allow-all.yaml", "frontend", "other", "443/TCP", true)]
    [InlineData("l3-egress-allow-all.yaml", "frontend", "frontend-prod", "443/TCP", false)]
    [InlineData("l3-egress-allow-all.yaml", "frontend", "1.1.1.1", "443/TCP", false)]
    // egressDeny beats egress toEntities all.
    [InlineData("l3-egress-deny.yaml", "frontend", "backend", "80/TCP", false)]
    [InlineData("l3-egress-deny.yaml", "frontend", "other", "80/TCP", true)]
    [InlineData("l3-egress-deny.yaml", "frontend", "8.8.8.8", "53/UDP", true)]
    // `egress: [{}]` selects the endpoint and allows nothing; ingress stays open.
    [InlineData("l3-egress-default-deny.yaml", "restricted", "backend", "80/TCP", false)]
    [InlineData("l3-egress-default-deny.yaml", "restricted", "8.8.8.8", "53/UDP", false)]
    [InlineData("l3-egress-default-deny.yaml", "backend", "restricted", "80/TCP", true)]
    // Entities.
    [InlineData("entities-apiserver.yaml", "dev", "apiserver", "443/TCP", true)]
    [InlineData("entities-apiserver.yaml", "dev", "node-local", "443/TCP", false)]
    [InlineData("entities-host.yaml", "dev", "node-local", "10250/TCP", true)]
    [InlineData("entities-host.yaml", "dev", "node-2", "10250/TCP", false)]
    [InlineData("entities-nodes.yaml", "node-local", "dev", "8080/TCP", true)]
    [InlineData("entities-nodes.yaml", "node-2", "dev", "8080/TCP", true)]
    [InlineData("entities-nodes.yaml", "frontend", "dev", "8080/TCP", false)]
    [InlineData("entities-world.yaml", "203.0.113.9", "public", "443/TCP", true)]
    [InlineData("entities-world.yaml", "frontend", "public", "443/TCP", false)]
    [InlineData("entities-world.yaml", "node-2", "public", "443/TCP", false)]
    // CIDR with except.
    [InlineData("cidr.yaml", "myservice", "20.1.1.1", "443/TCP", true)]
    [InlineData("cidr.yaml", "myservice", "20.1.1.2", "443/TCP", false)]
    [InlineData("cidr.yaml", "myservice", "10.1.2.3", "80/TCP", true)]
    [InlineData("cidr.yaml", "myservice", "10.96.0.1", "80/TCP", false)]
    [InlineData("cidr.yaml", "myservice", "10.111.255.255", "80/TCP", false)]
    [InlineData("cidr.yaml", "myservice", "10.112.0.1", "80/TCP", true)]
    [InlineData("cidr.yaml", "myservice", "backend", "80/TCP", false)] // 10.0.0.2 is an endpoint: CIDR rules don't select it
    // L4 only: any peer, only 80/TCP; ICMP blocked.
    [InlineData("l4-only.yaml", "myservice", "8.8.8.8", "80/TCP", true)]
    [InlineData("l4-only.yaml", "myservice", "backend", "80/TCP", true)]
    [InlineData("l4-only.yaml", "myservice", "backend", "81/TCP", false)]
    [InlineData("l4-only.yaml", "myservice", "backend", "80/UDP", false)]
    [InlineData("l4-only.yaml", "myservice", "backend", "8/ICMP", false)]
    // endPort ranges.
    [InlineData("l4-port-range.yaml", "myservice", "8.8.8.8", "79/TCP", false)]
    [InlineData("l4-port-range.yaml", "myservice", "8.8.8.8", "80/TCP", true)]
    [InlineData("l4-port-range.yaml", "myservice", "8.8.8.8", "300/TCP", true)]
    [InlineData("l4-port-range.yaml", "myservice", "8.8.8.8", "444/TCP", true)]
    [InlineData("l4-port-range.yaml", "myservice", "8.8.8.8", "445/TCP", false)]
    [InlineData("l4-port-range.yaml", "myservice", "8.8.8.8", "300/UDP", false)]
    // L3 + L4.
    [InlineData("l3-l4-combined.yaml", "frontend", "backend", "80/TCP", true)]
    [InlineData("l3-l4-combined.yaml", "frontend", "backend", "8080/TCP", false)]
    [InlineData("l3-l4-combined.yaml", "other", "backend", "80/TCP", false)]
    [InlineData("cidr-l4-combined.yaml", "crawler", "192.0.2.10", "80/TCP", true)]
    [InlineData("cidr-l4-combined.yaml", "crawler", "192.0.2.10", "443/TCP", false)]
    [InlineData("cidr-l4-combined.yaml", "crawler", "198.51.100.1", "80/TCP", false)]
    // ICMP types.
    [InlineData("icmp.yaml", "myservice", "8.8.8.8", "8/ICMP", true)]
    [InlineData("icmp.yaml", "myservice", "8.8.8.8", "13/ICMP", false)]
    [InlineData("icmp.yaml", "myservice", "2001:db8::1", "128/ICMPv6", true)]
    [InlineData("icmp.yaml", "myservice", "8.8.8.8", "80/TCP", false)]
    // matchExpressions: AND needs both; OR either (the doc's "k8s." key form included).
    [InlineData("match-expressions-and.yaml", "strict-prod", "backend", "80/TCP", true)]
    [InlineData("match-expressions-and.yaml", "frontend-prod", "backend", "80/TCP", false)]
    [InlineData("match-expressions-and.yaml", "strict-default", "backend", "80/TCP", false)]
    [InlineData("match-expressions-or.yaml", "frontend-prod", "backend", "80/TCP", true)]
    [InlineData("match-expressions-or.yaml", "strict-default", "backend", "80/TCP", true)]
    [InlineData("match-expressions-or.yaml", "other", "backend", "80/TCP", false)]
    // Deny precedence (clusterwide): world denied even though all is allowed.
    [InlineData("deny-from-world.yaml", "8.8.8.8", "backend", "80/TCP", false)]
    [InlineData("deny-from-world.yaml", "frontend", "backend", "80/TCP", true)]
    [InlineData("deny-from-world.yaml", "node-2", "leia", "80/TCP", true)]
    // Namespaces.
    [InlineData("k8s-isolate-namespaces.yaml", "luke-ns1", "leia", "80/TCP", true)]
    [InlineData("k8s-isolate-namespaces.yaml", "luke", "leia", "80/TCP", false)]
    [InlineData("k8s-isolate-namespaces.yaml", "leia", "luke", "80/TCP", false)]
    [InlineData("k8s-isolate-namespaces.yaml", "frontend", "backend", "80/TCP", true)] // default namespace untouched
    [InlineData("k8s-expose-across-namespace.yaml", "luke", "leia", "80/TCP", true)]
    [InlineData("k8s-expose-across-namespace.yaml", "luke-ns1", "leia", "80/TCP", false)]
    [InlineData("ccnp-wildcard-from-endpoints.yaml", "frontend", "kube-dns", "53/UDP", true)]
    [InlineData("ccnp-wildcard-from-endpoints.yaml", "luke", "kube-dns", "53/UDP", true)]
    [InlineData("ccnp-wildcard-from-endpoints.yaml", "luke", "kube-dns", "53/TCP", false)]
    [InlineData("ccnp-wildcard-from-endpoints.yaml", "node-2", "kube-dns", "53/UDP", false)] // {} in a CCNP = pods only
    [InlineData("ccnp-wildcard-from-endpoints.yaml", "8.8.8.8", "kube-dns", "53/UDP", false)]
    public void DocumentedVerdict(string file, string from, string to, string dport, bool allowed)
    {
        var result = Trace(file, from, to, dport);
        Assert.True(allowed == result.Allowed, result.ToText());
    }

    [Fact]
    public void DenyNamesTheDenyRuleAndAllowNamesItsRule()
    {
        var denied = Trace("l3-egress-deny.yaml", "frontend", "backend", "80/TCP");
        Assert.Equal(VerdictKind.Denied, denied.Egress.Kind);
        var rule = denied.Snapshot.RuleOf(denied.Egress)!;
        Assert.Equal("deny-egress-example", rule.PolicyName);
        Assert.Equal("spec.egressDeny[0]", rule.Path);
        Assert.True(rule.Deny);
        Assert.Contains("Final verdict: DENIED", denied.ToText());

        var allowed = Trace("l3-egress-deny.yaml", "frontend", "other", "80/TCP");
        Assert.Equal("spec.egress[0]", allowed.Snapshot.RuleOf(allowed.Egress)!.Path);
        Assert.EndsWith("Final verdict: ALLOWED" + Environment.NewLine, allowed.ToText());
    }

    [Fact]
    public void DefaultDenyIsReportedAsSuch()
    {
        var r = Trace("l3-simple-ingress.yaml", "other", "backend", "80/TCP");
        Assert.Equal(VerdictKind.DefaultDenied, r.Ingress.Kind);
        Assert.Contains("Ingress at destination: DENIED by default deny", r.ToText());
        Assert.Equal(VerdictKind.Unrestricted, r.Egress.Kind);
    }

    [Fact]
    public void LabelListPeersResolveToTheSameIdentityAsEndpoints()
    {
        var r = Trace("l3-l4-combined.yaml", "role=frontend", "role=backend", "80/TCP");
        Assert.True(r.Allowed, r.ToText());
        var other = Trace("l3-l4-combined.yaml", "role=frontend,k8s:io.kubernetes.pod.namespace=production", "role=backend", "80/TCP");
        Assert.False(other.Allowed, other.ToText());
    }
}
