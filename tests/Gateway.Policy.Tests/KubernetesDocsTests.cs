namespace Gateway.Policy.Tests;

/// <summary>Verdicts for the NetworkPolicy examples of the Kubernetes documentation (fixtures/policies/kubernetes-docs).</summary>
public class KubernetesDocsTests
{
    private static bool Allowed(string file, string from, string to, string dport)
    {
        var identities = new IdentityAllocator();
        var endpoints = EndpointFile.Load(TestPaths.Fixture("kubernetes-docs/endpoints.yaml"), identities);
        var policies = PolicyLoader.Load(TestPaths.Fixture("kubernetes-docs/" + file));
        Assert.True(PolicyTracer.TryParsePort(dport, out byte proto, out ushort port, out _));
        return PolicyTracer.Trace(policies, endpoints, from, to, proto, port).Allowed;
    }

    [Theory]
    [InlineData("test-network-policy.yaml", "172.17.0.5", "db", "6379/TCP", true)]
    [InlineData("test-network-policy.yaml", "172.17.1.5", "db", "6379/TCP", false)]   // except
    [InlineData("test-network-policy.yaml", "app", "db", "6379/TCP", true)]           // namespace project=myproject
    [InlineData("test-network-policy.yaml", "frontend", "db", "6379/TCP", true)]      // same-namespace pod
    [InlineData("test-network-policy.yaml", "frontend-other", "db", "6379/TCP", false)] // podSelector is namespace-local
    [InlineData("test-network-policy.yaml", "web", "db", "6379/TCP", false)]
    [InlineData("test-network-policy.yaml", "frontend", "db", "6380/TCP", false)]
    [InlineData("test-network-policy.yaml", "frontend", "db", "6379/UDP", false)]
    [InlineData("test-network-policy.yaml", "db", "10.0.0.7", "5978/TCP", true)]
    [InlineData("test-network-policy.yaml", "db", "10.0.1.7", "5978/TCP", false)]
    [InlineData("test-network-policy.yaml", "db", "web", "5978/TCP", false)]
    [InlineData("test-network-policy.yaml", "web", "8.8.8.8", "53/UDP", true)]        // web is not selected
    [InlineData("default-deny-ingress.yaml", "web", "db", "80/TCP", false)]
    [InlineData("default-deny-ingress.yaml", "db", "8.8.8.8", "443/TCP", true)]       // egress untouched
    [InlineData("default-deny-ingress.yaml", "web", "app", "80/TCP", true)]           // other namespace untouched
    [InlineData("allow-all-ingress.yaml", "8.8.8.8", "app", "22/TCP", true)]
    [InlineData("multi-port-egress.yaml", "db", "10.0.0.1", "32000/TCP", true)]
    [InlineData("multi-port-egress.yaml", "db", "10.0.0.1", "32768/TCP", true)]
    [InlineData("multi-port-egress.yaml", "db", "10.0.0.1", "32769/TCP", false)]
    [InlineData("multi-port-egress.yaml", "db", "10.0.0.1", "31999/TCP", false)]
    public void DocumentedVerdict(string file, string from, string to, string dport, bool allowed) =>
        Assert.Equal(allowed, Allowed(file, from, to, dport));

    [Fact]
    public void EachPolicyAppliesOnlyInItsNamespace()
    {
        var identities = new IdentityAllocator();
        var endpoints = EndpointFile.Load(TestPaths.Fixture("kubernetes-docs/endpoints.yaml"), identities);
        var both = new PolicySet(
            PolicyLoader.Load(TestPaths.Fixture("kubernetes-docs/default-deny-ingress.yaml")).Documents
                .Concat(PolicyLoader.Load(TestPaths.Fixture("kubernetes-docs/allow-all-ingress.yaml")).Documents).ToArray(), []);
        Assert.True(PolicyTracer.Trace(both, endpoints, "web", "app", Datapath.IpProtocol.Tcp, 80).Allowed);
        Assert.False(PolicyTracer.Trace(both, endpoints, "app", "web", Datapath.IpProtocol.Tcp, 80).Allowed);
    }
}
